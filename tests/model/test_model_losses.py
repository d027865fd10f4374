"""InfoNCE and CLUB behave as the formulas in the method specification say."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cookie.model.losses import ClubRemoval, club_estimate, info_nce, nce_bound


def _manual_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    """The spec's formula, written out with loops."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    n = a.shape[0]
    total = 0.0
    for k in range(n):
        ab = torch.stack([a[k] @ b[j] for j in range(n)]) / tau
        ba = torch.stack([b[k] @ a[j] for j in range(n)]) / tau
        total += float(torch.log_softmax(ab, 0)[k] + torch.log_softmax(ba, 0)[k])
    return -total / (2 * n)


def test_info_nce_matches_formula() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    assert math.isclose(float(info_nce(a, b, 0.1)), _manual_nce(a, b, 0.1), rel_tol=1e-5)
    assert math.isclose(float(info_nce(a, b, 0.1)), float(info_nce(b, a, 0.1)), rel_tol=1e-6)


def test_info_nce_lower_for_aligned_pairs() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(256, 16, generator=g)
    a = z + 0.1 * torch.randn(256, 16, generator=g)
    b = z + 0.1 * torch.randn(256, 16, generator=g)
    aligned = float(info_nce(a, b, 0.1))
    shuffled = float(info_nce(a, b[torch.randperm(256, generator=g)], 0.1))
    assert aligned < 0.5 * math.log(256) < shuffled
    assert aligned + 2.0 < shuffled


def test_info_nce_mask_drops_rows() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(20, 5, generator=g), torch.randn(20, 5, generator=g)
    mask = torch.arange(20) % 4 != 0
    masked = info_nce(a, b, 0.1, mask)
    assert math.isclose(float(masked), float(info_nce(a[mask], b[mask], 0.1)), rel_tol=1e-6)
    b2 = b.clone()
    b2[~mask] = float("nan")  # whatever sits in masked rows never reaches the loss
    assert math.isclose(float(info_nce(a, b2, 0.1, mask)), float(masked), rel_tol=1e-6)


def test_info_nce_too_few_rows_is_zero_but_connected() -> None:
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3)
    loss = info_nce(a, b, 0.1, torch.tensor([True, False, False, False]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert a.grad is not None and float(a.grad.abs().sum()) == 0.0


def test_club_estimate_and_bound() -> None:
    eye = torch.eye(6) * 5.0
    assert float(club_estimate(eye)) > 0
    assert float(club_estimate(torch.ones(6, 6))) == 0.0
    assert float(nce_bound(eye)) > float(nce_bound(torch.zeros(6, 6)))
    assert math.isclose(float(nce_bound(torch.zeros(6, 6))), 0.0, abs_tol=1e-6)


def test_club_removal_gradients_split_between_critic_and_encoder() -> None:
    torch.manual_seed(0)
    club = ClubRemoval(4, 4, 8, 4)
    a = torch.randn(10, 4, requires_grad=True)
    b = torch.randn(10, 4, requires_grad=True)
    estimate, critic_loss = club(a, b)
    estimate.backward(retain_graph=True)
    assert all(p.grad is None for p in club.parameters())  # the estimate never trains the critic
    assert a.grad is not None
    a.grad = None
    critic_loss.backward()
    assert a.grad is None  # the critic loss never moves the representations
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in club.parameters())
