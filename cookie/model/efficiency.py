"""Efficiency figures of the method specification section 4: parameters, FLOPs per training step,
seconds per epoch and peak memory, measured the same way for every method.

Every measurement runs on a deep copy of the model, so profiling never changes its weights.
"""

from __future__ import annotations

import contextlib
import copy
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from cookie.model.base import RegionModel, batch_indices


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def expected_objectives(method: str, n_views: int) -> int:
    """Objective counts of the spec: CooKIE M + M(M-1)/2, GFactorCL 2^M - 1."""
    m = n_views
    counts: dict[str, int] = {  # annotated: int ** int is typed as Any (a negative exponent gives a float)
        "cookie": m + m * (m - 1) // 2,
        "intra_only": m,
        "pair_only": m * (m - 1) // 2,
        "gfactorcl": 2**m - 1,
    }
    return counts.get(method, 0)


def _first_batch(
    model: RegionModel, views: Mapping[str, Tensor], masks: Mapping[str, Tensor | None]
) -> tuple[dict[str, Tensor], dict[str, Tensor | None]]:
    n = next(iter(views.values())).shape[0]
    gen = model.make_generator()
    idx = batch_indices(n, model.config.batch_size, gen)[0]
    if idx is None:
        return dict(views), dict(masks)
    return {k: x[idx] for k, x in views.items()}, {k: (None if x is None else x[idx]) for k, x in masks.items()}


def _train_step(model: RegionModel, views: Any, masks: Any, stage: str, gen: torch.Generator) -> None:
    model.module.train()
    model.module.zero_grad(set_to_none=True)
    total, _ = model.module(views, masks, stage, gen)
    total.backward()


def step_flops(model: RegionModel, views: Mapping[str, Tensor], masks: Mapping[str, Tensor | None], stage: str) -> int:
    """FLOPs of one training step (forward + backward of the loss on one batch), FlopCounterMode."""
    work = copy.deepcopy(model)
    bv, bm = _first_batch(work, views, masks)
    gen = work.make_generator()
    with FlopCounterMode(display=False) as counter:
        _train_step(work, bv, bm, stage, gen)
    return int(counter.get_total_flops())


def seconds_per_epoch(
    model: RegionModel,
    views: Mapping[str, Tensor],
    masks: Mapping[str, Tensor | None],
    stage: str,
    epochs: int = 3,
    warmup: int = 1,
) -> float:
    """Mean wall time of a training epoch of ``stage`` (optimizer step included)."""
    work = copy.deepcopy(model)
    gen = work.make_generator()
    opt = work.make_optimizer()
    for _ in range(warmup):
        work.run_epoch(views, masks, stage, opt, gen)
    _sync(work.device)
    start = time.perf_counter()
    for _ in range(epochs):
        work.run_epoch(views, masks, stage, opt, gen)
    _sync(work.device)
    return (time.perf_counter() - start) / max(epochs, 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (the CPU profiler prints start/stop lines there)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def peak_memory_mb(fn: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    """Peak tensor memory (MB, 1e6 bytes) allocated while ``fn`` runs, above what was live before.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: replay of the allocation events recorded by
    the PyTorch profiler (tracemalloc does not see tensor storage); if that is unavailable, the
    growth of the process's peak RSS (a lower bound when the process already peaked higher).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 1e6
    try:
        from torch.profiler import ProfilerActivity, profile

        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        live = peak = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            live += e.nbytes()
            peak = max(peak, live)
        return peak / 1e6
    except Exception:  # pragma: no cover - depends on the profiler build
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (after - before) / 1e3  # ru_maxrss is in KiB on Linux


def step_peak_memory_mb(
    model: RegionModel, views: Mapping[str, Tensor], masks: Mapping[str, Tensor | None], stage: str
) -> float:
    """Peak memory of one training step of ``stage`` (forward + backward)."""
    work = copy.deepcopy(model)
    bv, bm = _first_batch(work, views, masks)
    gen = work.make_generator()
    _train_step(work, bv, bm, stage, gen)  # warm-up: allocate grads once, like a running trainer
    return peak_memory_mb(lambda: _train_step(work, bv, bm, stage, gen), work.device)


@dataclass
class EfficiencyReport:
    """Efficiency of one model on one data set; ``main_stage`` is its most expensive stage."""

    method: str
    n_views: int
    n_rows: int
    n_objectives: int
    params: int
    embedding_dim: int
    main_stage: str
    flops_per_step: int
    seconds_per_epoch: float
    peak_memory_mb: float
    total_train_flops: int
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    device: str = "cpu"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_model(
    model: RegionModel,
    views: Mapping[str, Any],
    masks: Mapping[str, Any] | None = None,
    epochs: int = 3,
    memory: bool = True,
) -> EfficiencyReport:
    """Parameters, FLOPs/step, s/epoch and peak memory of every stage of ``model``.

    ``total_train_flops`` = sum over stages of epochs x steps per epoch x FLOPs per step.
    """
    v, m = model.prepare(views, masks)
    n = next(iter(v.values())).shape[0]
    steps_per_epoch = len(batch_indices(n, model.config.batch_size, model.make_generator()))
    per_stage: dict[str, dict[str, float]] = {}
    total = 0
    for st in model.stages():
        flops = step_flops(model, v, m, st.name)
        per_stage[st.name] = {
            "epochs": st.epochs,
            "flops_per_step": flops,
            "seconds_per_epoch": seconds_per_epoch(model, v, m, st.name, epochs=epochs),
            "peak_memory_mb": step_peak_memory_mb(model, v, m, st.name) if memory else float("nan"),
        }
        total += st.epochs * steps_per_epoch * flops
    main = max(per_stage, key=lambda k: per_stage[k]["flops_per_step"]) if per_stage else ""
    main_row = per_stage.get(main, {"flops_per_step": 0, "seconds_per_epoch": 0.0, "peak_memory_mb": 0.0})
    return EfficiencyReport(
        method=model.method,
        n_views=len(model.view_names),
        n_rows=n,
        n_objectives=model.n_objectives,
        params=model.num_parameters(),
        embedding_dim=model.embedding_dim,
        main_stage=main,
        flops_per_step=int(main_row["flops_per_step"]),
        seconds_per_epoch=float(main_row["seconds_per_epoch"]),
        peak_memory_mb=float(main_row["peak_memory_mb"]),
        total_train_flops=int(total),
        stages=per_stage,
        device=str(model.device),
    )
