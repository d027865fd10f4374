"""A seed ensemble of one learned method: k members trained side by side, their embeddings averaged.

Contrastive embeddings of the same data differ from seed to seed by more than noise in the downstream
scores (Manhattan-180: crime R2 std 0.03 over 5 seeds), and mostly by an orthogonal transform of each block:
InfoNCE on cosine similarities is invariant to rotations of a head's output. Averaging members block by block
is only meaningful once they share a basis, so after training every member's block is rotated onto the
members' mean by generalised orthogonal Procrustes, fitted on the training regions without labels, and the
rotations are kept as buffers: the saved model embeds any new region with the same fixed rotations.

Members are independent models: the loss is the mean of their losses (Adam's per-parameter steps make that
the same as training each alone, up to its epsilon), they draw their own dropout and augmentations, and one
early-stopping rule watches their mean held-out loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cookie.config.model import ModelConfig
from cookie.model.base import Masks, Reduce, RegionModule, Stage, Views

#: rounds of generalised Procrustes (align every member to the mean, recompute the mean)
ALIGN_ROUNDS = 5
#: singular values of a cross matrix below this fraction of the largest count as zero (ties in Procrustes)
NULL_TOL = 1e-9


def member_seed(seed: int, k: int) -> int:
    """The initial-weight seed of member ``k``: member 0 is the plain model of ``seed``; the others are drawn
    from (seed, k), so the ensembles of two seeds never share a member."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([abs(int(seed)), int(seed < 0), k]).generate_state(1)[0])


def procrustes(cross: Tensor) -> Tensor:
    """The orthogonal R that minimises ||A R - B|| given ``cross`` = A^T B (orthogonal Procrustes).

    A rank-deficient ``cross`` (an untrained or collapsed block: dead ReLU units leave a block of rank < d)
    has many minimisers, and the SVD's arbitrary pick of the null directions changes with the order of the
    sums, so one process and two ranks could align differently. Among the minimisers this returns the one
    nearest the identity, which is unique and does not depend on how the null space is spanned.
    """
    u, s, vt = torch.linalg.svd(cross)
    k = int((s > NULL_TOL * s[0]).sum()) if float(s[0]) > 0 else 0
    out: Tensor = u[:, :k] @ vt[:k]
    if k < cross.shape[0]:
        un, vn = u[:, k:], vt[k:].T
        a, _, bt = torch.linalg.svd(un.T @ vn)
        out = out + un @ (a @ bt) @ vn.T
    return out


class EnsembleModule(RegionModule):
    """``config.ensemble`` members of one method, and a rotation per member and block."""

    def __init__(
        self, view_dims: Mapping[str, int], config: ModelConfig, build: Callable[[ModelConfig], RegionModule]
    ) -> None:
        super().__init__(view_dims, config)
        member_config = config.model_copy(update={"ensemble": 1})
        members = [build(member_config)]  # under the caller's seed: member 0 is the plain model
        for k in range(1, config.ensemble):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(member_seed(config.seed, k))
                members.append(build(member_config))
        self.members = nn.ModuleList(members)
        for b, (_, width) in enumerate(self.block_specs()):
            self.register_buffer(f"rotation_{b}", torch.eye(width).repeat(config.ensemble, 1, 1))

    def member(self, k: int) -> RegionModule:
        out = self.members[k]
        assert isinstance(out, RegionModule)
        return out

    def each_member(self) -> list[RegionModule]:
        return [self.member(k) for k in range(len(self.members))]

    def rotation(self, b: int) -> Tensor:
        out = getattr(self, f"rotation_{b}")
        assert isinstance(out, Tensor)
        return out

    # ---- training -------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        return self.member(0).stages()

    @property
    def n_objectives(self) -> int:
        return len(self.members) * self.member(0).n_objectives

    def set_count_space(self, space: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[str]]]) -> None:
        for member in self.each_member():
            member.set_count_space(space)

    def prefit(self, views: Views, masks: Masks, reduce: Reduce | None = None) -> None:
        for member in self.each_member():
            member.prefit(views, masks, reduce)

    def forward(
        self, views: Views, masks: Masks, stage: str, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        totals: list[Tensor] = []
        parts: dict[str, Tensor] = {}
        for member in self.members:
            total, member_parts = member(views, masks, stage, generator)
            totals.append(total)
            for key, value in member_parts.items():
                parts[key] = parts.get(key, 0.0) + value / len(self.members)
        return torch.stack(totals).mean(), parts

    @torch.no_grad()
    def postfit(self, views: Views, masks: Masks, reduce: Reduce | None = None) -> None:
        """Fit each block's rotations on these rows (all of them summed over ranks by ``reduce``)."""
        red = reduce or (lambda t: t)
        was_training = self.training
        self.eval()
        per_member = [member.embed_blocks(views, masks) for member in self.each_member()]
        for b in range(len(per_member[0])):
            xs = [blocks[b].double() for blocks in per_member]
            target = xs[0]
            for _ in range(ALIGN_ROUNDS):
                rotations = [procrustes(red(x.T @ target)) for x in xs]
                target = torch.stack([x @ r for x, r in zip(xs, rotations)]).mean(0)
            self.rotation(b).copy_(torch.stack(rotations).to(self.rotation(b).dtype))
        self.train(was_training)

    # ---- embedding ------------------------------------------------------------------------
    def block_specs(self) -> list[tuple[str, int]]:
        return self.member(0).block_specs()

    def embed_blocks(self, views: Views, masks: Masks) -> list[Tensor]:
        """Each block: the members' blocks, rotated into one basis, averaged and L2-normalised (zeros stay zeros)."""
        per_member = [member.embed_blocks(views, masks) for member in self.each_member()]
        out = []
        for b in range(len(per_member[0])):
            rot = self.rotation(b)
            mean = torch.stack([blocks[b] @ rot[k] for k, blocks in enumerate(per_member)]).mean(0)
            out.append(F.normalize(mean, dim=-1))
        return out
