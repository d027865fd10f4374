"""GFactorCL: FactorCL's objectives generalised to every subset of M >= 2 views (the baseline).

the method specification section 3. For each subset S with |S| >= 2, a head h_S^a per member a and the
shared objective ``mean_a NCE(h_S^a(f_a(x_a)), concat_{b in S minus a} h_S^b(f_b(x_b)))``; for each
view a, a unique objective conditioned on all other views. Objectives: 2^M - 1 (plus CLUB terms
if enabled); heads: M * 2^(M-1). Built from the same encoders, heads and losses as CooKIE, so
that a comparison measures the objective design, not the code.

Choices marked *(ours)*:
- comparing a d-vector with a (|S|-1)d concatenation: the anchor is tiled |S|-1 times, so the
  cosine is that of the anchor with the concatenation, block by block;
- for |S| = 2 the two anchors give the same symmetric NCE, which is computed once;
- ``pair_augment`` applies to the shared objectives exactly as to CooKIE's pairwise terms;
- the unique objective of view a is FactorCL's self-supervised decomposition
  ``I(X_a; X_a' | X_-a) = I(X_a; X_a') - I(X_a; X_-a) + ...``: NCE between u_a on the clean and
  the augmented view, and, with ``use_club``, minus a CLUB estimate between u_a and the other
  views' encoder outputs. Conditioning by concatenating the other views to both sides (as
  FactorCL does with low-cardinality labels) was tried and rejected: continuous views identify
  the row by themselves, the loss collapses to ~0 and u_a gets no signal;
- with ``use_club``: per subset one conditional CLUB term on augmented views (anchor = first
  member), FactorCL's ``I_CLUB(X1;X2|X1',X2')``.
- ``shared_blocks: mean`` reads each subset out as one block, the mean of its heads' estimates (CooKIE's
  z_ij rule); the default ('auto') keeps every head's output, as the specification says;
- GFactorCL trains in one joint stage of ``epochs_intra + epochs_pair`` epochs, the same number
  of epochs as CooKIE's two stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cookie.config.model import ModelConfig
from cookie.exceptions import ConfigError
from cookie.model.augment import Augmenter
from cookie.model.base import Masks, RegionModule, Stage, Views, nested
from cookie.model.cookie import augmenter_from, mean_block, present_weight
from cookie.model.encoders import ViewEncoder
from cookie.model.heads import ProjectionHead
from cookie.model.losses import ClubRemoval, info_nce


def all_present(masks: list[Tensor | None]) -> Tensor | None:
    out: Tensor | None = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


class GFactorCLModule(RegionModule):
    """Encoders f_m, unique heads u_m, and a head per member of every subset of >= 2 views."""

    def __init__(self, view_dims: Mapping[str, int], config: ModelConfig) -> None:
        super().__init__(view_dims, config)
        m = len(self.view_names)
        if m < 2:
            raise ConfigError(f"method 'gfactorcl' needs at least two views, got {self.view_names}")
        d = config.embed_dim
        self.subsets: list[tuple[int, ...]] = [s for k in range(2, m + 1) for s in combinations(range(m), k)]
        self.encoders = nn.ModuleList(
            ViewEncoder(view_dims[v], config.hidden_dim, d, config.dropout) for v in self.view_names
        )
        self.unique_heads = nn.ModuleList(ProjectionHead(d) for _ in range(m))
        self.subset_heads = nn.ModuleList(nn.ModuleList(ProjectionHead(d) for _ in s) for s in self.subsets)
        self.use_club = config.use_club
        if self.use_club:
            self.subset_clubs = nn.ModuleList(ClubRemoval(2 * d, 2 * d * (len(s) - 1), 2 * d, d) for s in self.subsets)
            self.unique_clubs = nn.ModuleList(ClubRemoval(d, d * (m - 1), 2 * d, d) for _ in range(m))
        self.augment: Augmenter = augmenter_from(config)

    def subset_name(self, s: int) -> str:
        return "__".join(self.view_names[k] for k in self.subsets[s])

    def stages(self) -> list[Stage]:
        return [Stage("joint", self.config.epochs_intra + self.config.epochs_pair)]

    @property
    def n_objectives(self) -> int:
        return len(self.view_names) + len(self.subsets)

    def block_specs(self) -> list[tuple[str, int]]:
        d = self.config.embed_dim
        specs = [(f"unique_{v}", d) for v in self.view_names]
        for s, members in enumerate(self.subsets):
            if self.config.shared_readout() == "mean":
                specs.append((f"shared_{self.subset_name(s)}", d))
            else:
                specs += [(f"shared_{self.subset_name(s)}_from_{self.view_names[a]}", d) for a in members]
        return specs

    def forward(
        self, views: Views, masks: Masks, stage: str, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if stage != "joint":
            raise ValueError(f"GFactorCL has one stage, 'joint', not {stage!r}")
        cfg = self.config
        m = len(self.view_names)
        xs = [views[v] for v in self.view_names]
        ms = [masks.get(v) for v in self.view_names]
        h = [enc(x) for enc, x in zip(self.encoders, xs)]
        h_aug = [enc(self.augment(x, generator, k)) for k, (enc, x) in enumerate(zip(self.encoders, xs))]
        parts: dict[str, Tensor] = {}
        total = h[0].new_zeros(())

        # unique objectives (conditioning on the other views through the CLUB removal term)
        for a, name in enumerate(self.view_names):
            u = self.unique_heads[a](h[a])
            term = info_nce(u, self.unique_heads[a](h_aug[a]), cfg.tau, ms[a])
            parts[f"unique/{name}"] = term.detach()
            total = total + term
            if self.use_club:
                context = torch.cat([h[b] for b in range(m) if b != a], dim=1)
                est, critic = self.unique_clubs[a](u, context, ms[a])
                parts[f"club/{name}"] = est.detach()
                total = total + cfg.beta_club * est + critic

        # shared objectives, one per subset
        for s, members in enumerate(self.subsets):
            heads = nested(self.subset_heads, s)
            h_shared = h_aug if cfg.pair_augment else h  # same input choice as CooKIE's pair terms
            outs = [heads[t](h_shared[a]) for t, a in enumerate(members)]
            outs_n = [F.normalize(o, dim=-1) for o in outs]
            mask = all_present([ms[a] for a in members])
            k = len(members)
            anchors = [0] if k == 2 else list(range(k))
            terms = []
            for t in anchors:
                context = torch.cat([outs_n[o] for o in range(k) if o != t], dim=1)
                terms.append(info_nce(outs_n[t].repeat(1, k - 1), context, cfg.tau, mask))
            term = torch.stack(terms).mean()
            parts[f"shared/{self.subset_name(s)}"] = term.detach()
            total = total + term
            if self.use_club:
                # FactorCL's I_CLUB(X1;X2|X1',X2'): clean and augmented views side by side
                first = members[0]
                anchor = torch.cat([heads[0](h[first]), heads[0](h_aug[first])], dim=1)
                ctx = torch.cat(
                    [heads[t](h[a]) for t, a in enumerate(members) if t > 0]
                    + [heads[t](h_aug[a]) for t, a in enumerate(members) if t > 0],
                    dim=1,
                )
                est, critic = self.subset_clubs[s](anchor, ctx, mask)
                parts[f"club/{self.subset_name(s)}"] = est.detach()
                total = total + cfg.beta_club * est + critic
        return total, parts

    def embed_blocks(self, views: Views, masks: Masks) -> list[Tensor]:
        """All head outputs on clean views, each block L2-normalised (with ``shared_blocks: mean``, one block per
        subset: the mean of its heads' estimates, as CooKIE's z_ij); missing views -> zeros."""
        xs = [views[v] for v in self.view_names]
        ms = [masks.get(v) for v in self.view_names]
        h = [enc(x) for enc, x in zip(self.encoders, xs)]
        w = [present_weight(mm, h[0]) for mm in ms]
        blocks = [F.normalize(u(hm), dim=-1) * wm for u, hm, wm in zip(self.unique_heads, h, w)]
        for s, members in enumerate(self.subsets):
            est = [F.normalize(nested(self.subset_heads, s)[t](h[a]), dim=-1) * w[a] for t, a in enumerate(members)]
            if self.config.shared_readout() == "mean":
                blocks.append(mean_block(est, [w[a] for a in members]))
            else:
                blocks += est
        return blocks
