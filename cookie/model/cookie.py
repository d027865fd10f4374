"""CooKIE: intra-view pretraining (unique information), then pairwise inter-view learning (shared).

the method specification section 3. Objectives: M intra-view + M(M-1)/2 pairwise; heads: M + M(M-1).
The ablations ``intra_only`` and ``pair_only`` are this module with one stage switched off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cookie.config.model import ModelConfig
from cookie.exceptions import ConfigError
from cookie.model.augment import Augmenter
from cookie.model.base import Masks, RegionModule, Stage, Views, nested
from cookie.model.encoders import ViewEncoder
from cookie.model.heads import ProjectionHead
from cookie.model.losses import ClubRemoval, info_nce

VARIANTS = ("cookie", "intra_only", "pair_only")


def both_present(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """Row mask of regions that have both views (None = all)."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def present_weight(mask: Tensor | None, like: Tensor) -> Tensor:
    """(B, 1) float weights: 1 where the view is present."""
    if mask is None:
        return torch.ones(like.shape[0], 1, device=like.device, dtype=like.dtype)
    return mask.to(like.dtype)[:, None]


def mean_block(estimates: Sequence[Tensor], weights: Sequence[Tensor]) -> Tensor:
    """One block from several heads' L2-normalised estimates of one shared part (each already zeroed where its
    view is missing): their mean over the views present in the row, normalised again; zeros where none is."""
    total = torch.stack(list(estimates)).sum(dim=0)
    present = torch.stack(list(weights)).sum(dim=0)
    return F.normalize(total / present.clamp(min=1.0), dim=-1)


def augmenter_from(config: ModelConfig) -> Augmenter:
    return Augmenter(config.augmentations, config.noise_sigma, config.mask_prob, config.augment_mode, config.thin_keep)


class CooKIEModule(RegionModule):
    """Encoders f_m, unique heads u_m, shared heads (s_ij^i, s_ij^j) for every pair i < j."""

    def __init__(self, view_dims: Mapping[str, int], config: ModelConfig, variant: str = "cookie") -> None:
        super().__init__(view_dims, config)
        if variant not in VARIANTS:
            raise ValueError(f"unknown CooKIE variant {variant!r}")
        if len(self.view_names) < 2 and variant != "intra_only":
            raise ConfigError(f"method {variant!r} needs at least two views, got {self.view_names}")
        self.variant = variant
        self.use_intra = variant in ("cookie", "intra_only")
        self.use_pair = variant in ("cookie", "pair_only")
        d = config.embed_dim
        m = len(self.view_names)
        self.pairs: list[tuple[int, int]] = list(combinations(range(m), 2)) if self.use_pair else []
        self.encoders = nn.ModuleList(
            ViewEncoder(view_dims[v], config.hidden_dim, d, config.dropout) for v in self.view_names
        )
        self.unique_heads = nn.ModuleList(ProjectionHead(d) for _ in range(m)) if self.use_intra else nn.ModuleList()
        # shared_heads[p][0] is s_ij^i (on view i), shared_heads[p][1] is s_ij^j (on view j)
        self.shared_heads = nn.ModuleList(nn.ModuleList([ProjectionHead(d), ProjectionHead(d)]) for _ in self.pairs)
        # CLUB(u_i, s_ij^j) and CLUB(u_j, s_ij^i) per pair: keep unique heads free of the pair's share
        self.use_club = config.use_club and self.use_intra and self.use_pair
        self.clubs = (
            nn.ModuleList(nn.ModuleList([ClubRemoval(d, d, 2 * d, d), ClubRemoval(d, d, 2 * d, d)]) for _ in self.pairs)
            if self.use_club
            else nn.ModuleList()
        )
        self.augment: Augmenter = augmenter_from(config)

    # ---- structure ----------------------------------------------------------------------
    def pair_name(self, p: int) -> str:
        i, j = self.pairs[p]
        return f"{self.view_names[i]}__{self.view_names[j]}"

    def stages(self) -> list[Stage]:
        out = []
        if self.use_intra:
            out.append(Stage("intra", self.config.epochs_intra))
        if self.use_pair:
            out.append(Stage("pair", self.config.epochs_pair))
        return out

    @property
    def n_objectives(self) -> int:
        return (len(self.view_names) if self.use_intra else 0) + len(self.pairs)

    def block_specs(self) -> list[tuple[str, int]]:
        d = self.config.embed_dim
        specs = [(f"unique_{v}", d) for v in self.view_names] if self.use_intra else []
        for p, (i, j) in enumerate(self.pairs):
            if self.config.shared_readout() == "each":
                specs += [(f"shared_{self.pair_name(p)}_from_{self.view_names[k]}", d) for k in (i, j)]
            else:
                specs.append((f"shared_{self.pair_name(p)}", d))
        return specs

    # ---- loss -----------------------------------------------------------------------------
    def forward(
        self, views: Views, masks: Masks, stage: str, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if stage not in {s.name for s in self.stages()}:
            raise ValueError(f"stage {stage!r} is not one of {[s.name for s in self.stages()]}")
        cfg = self.config
        xs = [views[v] for v in self.view_names]
        ms = [masks.get(v) for v in self.view_names]
        parts: dict[str, Tensor] = {}
        intra_weight = 1.0 if stage == "intra" else cfg.lambda_intra
        use_intra_terms = self.use_intra and intra_weight > 0
        pair_aug = stage == "pair" and cfg.pair_augment
        h: list[Tensor] = []  # encoders on clean views: intra anchors, CLUB, clean pair terms
        if use_intra_terms or self.use_club or (stage == "pair" and not pair_aug):
            h = [enc(x) for enc, x in zip(self.encoders, xs)]
        h_aug: list[Tensor] = []  # encoders on augmented views x'
        if use_intra_terms or pair_aug:
            h_aug = [enc(self.augment(x, generator, k)) for k, (enc, x) in enumerate(zip(self.encoders, xs))]
        total = (h or h_aug)[0].new_zeros(())
        unique: list[Tensor] = []
        if self.use_intra and (use_intra_terms or self.use_club):
            unique = [u(hm) for u, hm in zip(self.unique_heads, h)]
        if use_intra_terms:
            for k, name in enumerate(self.view_names):
                term = info_nce(unique[k], self.unique_heads[k](h_aug[k]), cfg.tau, ms[k])
                parts[f"intra/{name}"] = term.detach()
                total = total + intra_weight * term

        if stage == "pair":
            for p, (i, j) in enumerate(self.pairs):
                h_pair = h_aug if pair_aug else h
                s_i = nested(self.shared_heads, p)[0](h_pair[i])
                s_j = nested(self.shared_heads, p)[1](h_pair[j])
                mask = both_present(ms[i], ms[j])
                term = info_nce(s_i, s_j, cfg.tau, mask)
                parts[f"pair/{self.pair_name(p)}"] = term.detach()
                total = total + term
                if self.use_club:
                    est_i, critic_i = nested(self.clubs, p)[0](unique[i], s_j, mask)
                    est_j, critic_j = nested(self.clubs, p)[1](unique[j], s_i, mask)
                    parts[f"club/{self.pair_name(p)}"] = (est_i + est_j).detach()
                    parts[f"critic/{self.pair_name(p)}"] = (critic_i + critic_j).detach()
                    total = total + cfg.beta_club * (est_i + est_j) + critic_i + critic_j
        return total, parts

    # ---- embedding --------------------------------------------------------------------------
    def embed_blocks(self, views: Views, masks: Masks) -> list[Tensor]:
        """[u_1..u_M, z_12, .., z_(M-1)M], every block L2-normalised, missing views -> zeros.

        z_ij = (s_ij^i + s_ij^j) / 2 over the views present in the row, each normalised first
        *(ours: cosine-trained heads have arbitrary norms, so neither side dominates)*; with
        only one view present, z_ij is that view's estimate of the shared part. With
        ``shared_blocks: each`` the blocks are s_ij^i and s_ij^j themselves (zeros where their view is missing).
        """
        xs = [views[v] for v in self.view_names]
        ms = [masks.get(v) for v in self.view_names]
        h = [enc(x) for enc, x in zip(self.encoders, xs)]
        w = [present_weight(m, h[0]) for m in ms]
        blocks: list[Tensor] = []
        if self.use_intra:
            blocks += [F.normalize(u(hm), dim=-1) * wm for u, hm, wm in zip(self.unique_heads, h, w)]
        for p, (i, j) in enumerate(self.pairs):
            s_i = F.normalize(nested(self.shared_heads, p)[0](h[i]), dim=-1) * w[i]
            s_j = F.normalize(nested(self.shared_heads, p)[1](h[j]), dim=-1) * w[j]
            if self.config.shared_readout() == "each":
                blocks += [s_i, s_j]
            else:
                blocks.append(mean_block([s_i, s_j], [w[i], w[j]]))
        return blocks
