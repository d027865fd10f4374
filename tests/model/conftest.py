"""Shared fixtures of the model tests.

Torch runs single-threaded here: the tensors are small, and on a busy 2-core machine
intra-op threads spin against each other (about 10x slower, measured). Restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _small_views(n: int = 64, dims: tuple[int, ...] = (12, 7, 5), seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    out = {}
    for k, d in enumerate(dims):
        w = torch.randn(3, d, generator=g)
        out["abcdefgh"[k]] = z @ w + 0.5 * torch.randn(n, d, generator=g)
    return out


@pytest.fixture
def small_views() -> Callable[..., dict[str, torch.Tensor]]:
    """Factory of random views a, b, c, ... sharing a 3-d latent (so pairs have signal)."""
    return _small_views
