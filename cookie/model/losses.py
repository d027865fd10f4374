"""Contrastive objectives: symmetric InfoNCE and the CLUB-style removal estimate.

Both take batches of paired rows (row k of ``a`` pairs with row k of ``b``) and an optional row
mask, so that regions missing a view never enter that view's terms (neither as positives nor as
negatives).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call


def zero_loss(*tensors: Tensor) -> Tensor:
    """A zero that still depends on ``tensors``.

    Used when a term has fewer than two valid rows: the graph keeps every parameter of the term,
    so that DistributedDataParallel sees the same parameters used on every rank.
    """
    return sum(t.sum() for t in tensors) * 0.0  # type: ignore[return-value]


def _select(mask: Tensor | None, *tensors: Tensor) -> tuple[Tensor, ...]:
    if mask is None:
        return tensors
    return tuple(t[mask] for t in tensors)


def info_nce(a: Tensor, b: Tensor, tau: float = 0.1, mask: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE with cosine similarity and temperature ``tau`` (the method specification section 3).

    ``NCE(a, b) = -1/2B sum_k [log softmax_j(sim(a_k, b_j)/tau)_k + log softmax_j(sim(b_k, a_j)/tau)_k]``.
    Rows where ``mask`` is False are dropped first.
    """
    a_sel, b_sel = _select(mask, a, b)
    if a_sel.shape[0] < 2:
        return zero_loss(a, b)
    a_n = F.normalize(a_sel, dim=-1)
    b_n = F.normalize(b_sel, dim=-1)
    logits = a_n @ b_n.T / tau  # logits[k, j] = sim(a_k, b_j) / tau
    target = torch.arange(a_n.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class SeparableCritic(nn.Module):
    """f*(a, b) = g(a) . h(b) / sqrt(k): all B x B scores with two MLPs and one matmul *(ours)*.

    FactorCL's concat critic scores B^2 concatenated pairs with an MLP; the separable form gives
    the same kind of estimate at O(B) MLP cost, which keeps full-batch training cheap.
    """

    def __init__(self, a_dim: int, b_dim: int, hidden_dim: int = 128, out_dim: int = 64) -> None:
        super().__init__()
        self.g = nn.Sequential(nn.Linear(a_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
        self.h = nn.Sequential(nn.Linear(b_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
        self.scale = 1.0 / math.sqrt(out_dim)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Scores ``s[j, k] = f*(a_j, b_k)``, shape (B, B)."""
        scores: Tensor = self.g(a) @ self.h(b).T
        return scores * self.scale


def nce_bound(scores: Tensor) -> Tensor:
    """InfoNCE lower bound on I(a; b) from critic scores ``s[j, k] = f*(a_j, b_k)``."""
    n = scores.shape[0]
    return (scores.diagonal() - scores.logsumexp(dim=0)).mean() + math.log(n)


def club_estimate(scores: Tensor) -> Tensor:
    """NCE-CLUB upper-bound estimate: ``mean_k f*(a_k, b_k) - mean_{k,j} f*(a_j, b_k)``."""
    return scores.diagonal().mean() - scores.mean()


class ClubRemoval(nn.Module):
    """CLUB-style removal term with its own critic, usable inside one loss and one optimizer.

    ``forward`` returns ``(estimate, critic_loss)``:
    - ``estimate`` is the CLUB estimate on the live representations with the critic's weights
      detached, so minimising it changes only the encoders and heads (removes information);
    - ``critic_loss`` is minus the NCE bound on detached representations, so minimising it
      trains only the critic to maximise the bound, as FactorCL does with a second optimizer.
    Adding both to the total loss gives the two-player update in a single backward pass.
    """

    def __init__(self, a_dim: int, b_dim: int, hidden_dim: int = 128, out_dim: int = 64) -> None:
        super().__init__()
        self.critic = SeparableCritic(a_dim, b_dim, hidden_dim, out_dim)

    def forward(self, a: Tensor, b: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a_sel, b_sel = _select(mask, a, b)
        if a_sel.shape[0] < 2:
            zero = zero_loss(a, b, *self.critic.parameters())
            return zero, zero
        frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
        estimate = club_estimate(functional_call(self.critic, frozen, (a_sel, b_sel)))
        critic_loss = -nce_bound(self.critic(a_sel.detach(), b_sel.detach()))
        return estimate, critic_loss
