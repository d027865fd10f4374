"""What every TorchDistributor rank runs: DDP training of a RegionModel on the rank's shard.

:func:`train_worker` is importable (pickled by reference), takes one picklable
:class:`WorkerSpec` and returns rank 0's payload on every rank (broadcast, because in local mode
TorchDistributor returns whichever rank wrote its output file last: docs/stack-notes.md P4.1).

Per rank: read the shard from the Delta tables' Parquet files (:mod:`cookie.training.data`),
build the model from ``model:``, wrap ``model.module`` in ``DistributedDataParallel`` with
``find_unused_parameters=True`` (stage ``intra`` leaves the shared heads unused), then drive
``model.stages()`` / ``model.loss(..., module=ddp)`` with ``make_generator(offset=rank)``.
Gradients are averaged over ranks by DDP; each rank's contrastive negatives are its own rows.

Rank 0 alone logs to MLflow (the driver's run id, an absolute tracking URI) and writes the
checkpoints, which also carry every rank's RNG states.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

@dataclass(frozen=True)
class WorkerSpec:
    """Everything a rank needs; pickled by TorchDistributor into each process."""

    model_config: dict[str, Any]
    stats: dict[str, Any]  # FeatureStats.to_dict()
    fingerprint: str
    checkpoint_dir: str  # this run's folder
    run_id: str | None = None
    tracking_uri: str | None = None
    resume: bool = False
    stop_after_epochs: int | None = None
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    log_every: int = 1
    torch_threads: int = 1
    use_gpu: bool = False
    profile: bool = True
    callback: Callable[[dict[str, Any]], None] | None = None  # rank 0, after every epoch (tests, hooks)
    extra: dict[str, Any] = field(default_factory=dict)


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(f"[cookie.train rank 0] {msg}", flush=True)


class _MetricLog:
    """Rank 0's buffered MLflow metrics (one ``log_batch`` per flush)."""

    def __init__(self, tracking_uri: str | None, run_id: str | None) -> None:
        self.client = None
        self.run_id = run_id
        self.buffer: list[Any] = []
        self.seconds = 0.0
        if run_id and tracking_uri:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=tracking_uri)

    def add(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.buffer += [Metric(k, float(v), ts, step) for k, v in metrics.items()]

    def flush(self) -> None:
        if self.client is None or not self.buffer:
            return
        t = time.perf_counter()
        for i in range(0, len(self.buffer), 1000):
            self.client.log_batch(self.run_id, metrics=self.buffer[i:i + 1000])
        self.buffer = []
        self.seconds += time.perf_counter() - t


def _rng_state(generator, device) -> dict[str, Any]:
    import torch

    out = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _set_rng_state(state: dict[str, Any], generator, device) -> None:
    import torch

    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _reduce_mean(values: dict[str, float], world: int, device) -> dict[str, float]:
    import torch
    import torch.distributed as dist

    if world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(x) / world for k, x in zip(keys, t.tolist())}


def _epoch(model, ddp, views, masks, stage: str, optimizer, generator, world: int, device) -> dict[str, float]:
    """One epoch of ``stage`` on this rank's rows; every rank takes the same number of steps."""
    import torch
    import torch.distributed as dist

    from cookie.model.base import batch_indices

    n = next(iter(views.values())).shape[0]
    batches = batch_indices(n, model.config.batch_size, generator)
    steps = len(batches)
    if world > 1 and model.config.batch_size is not None:
        t = torch.tensor([steps], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)  # shards differ in size: no rank may wait alone
        steps = int(t.item())
    model.module.train()
    sums: dict[str, float] = {}
    for idx in batches[:steps]:
        bv = views if idx is None else {k: x[idx] for k, x in views.items()}
        bm = masks if idx is None else {k: (None if x is None else x[idx]) for k, x in masks.items()}
        optimizer.zero_grad(set_to_none=True)
        total, parts = model.loss(bv, bm, stage, generator, module=ddp)
        total.backward()
        optimizer.step()
        sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {k: s / max(steps, 1) for k, s in sums.items()}


def _profile(model, views, masks) -> dict[str, Any]:
    """Efficiency figures on rank 0's shard (deep copies; RNG untouched)."""
    import torch

    from cookie.model.efficiency import expected_objectives, step_flops, step_peak_memory_mb

    out: dict[str, Any] = {
        "params": model.num_parameters(),
        "objectives": model.n_objectives,
        "objectives_expected": expected_objectives(model.method, len(model.view_names)),
        "embedding_dim": model.embedding_dim,
        "stages": {},
    }
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for st in model.stages():
            out["stages"][st.name] = {
                "flops_per_step": step_flops(model, views, masks, st.name),
                "peak_memory_mb": step_peak_memory_mb(model, views, masks, st.name),
            }
    if out["stages"]:
        main = max(out["stages"], key=lambda k: out["stages"][k]["flops_per_step"])
        out["main_stage"] = main
        out["flops_per_step"] = out["stages"][main]["flops_per_step"]
        out["peak_memory_mb"] = out["stages"][main]["peak_memory_mb"]
    return out


def efficiency_metrics(eff: dict[str, Any]) -> dict[str, float]:
    """The efficiency figures as flat MLflow metrics (``efficiency/...``)."""
    out: dict[str, float] = {}
    for k in ("params", "flops_per_step", "objectives", "embedding_dim", "seconds_per_epoch", "peak_memory_mb"):
        if isinstance(eff.get(k), (int, float)):
            out[f"efficiency/{k}"] = float(eff[k])
    for st, s in eff.get("seconds_per_epoch_by_stage", {}).items():
        out[f"efficiency/seconds_per_epoch_{st}"] = float(s)
    for st, d in eff.get("stages", {}).items():
        out[f"efficiency/flops_per_step_{st}"] = float(d["flops_per_step"])
        out[f"efficiency/peak_memory_mb_{st}"] = float(d["peak_memory_mb"])
    for r, mb in enumerate(eff.get("peak_rss_mb_per_rank", [])):
        out[f"efficiency/peak_rss_mb_rank{r}"] = float(mb)
    return out


def train_worker(spec: WorkerSpec) -> dict[str, Any]:
    """Train on this rank's shard; return rank 0's payload (model state, history, timings) encoded
    by :func:`encode_payload` (decode with :func:`decode_payload`), identical on every rank."""
    import torch
    import torch.distributed as dist

    t_start = time.perf_counter()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.set_num_threads(spec.torch_threads)
    use_cuda = bool(spec.use_gpu) and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        payload = _train(spec, rank, world, device, t_start)
        blob = encode_payload(payload) if rank == 0 else None
        box = [blob]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    finally:
        dist.destroy_process_group()


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Rank 0's payload as bytes, returned unchanged by every rank.

    In local mode every rank pickles its return value into the *same* output file at the same
    time. Equal objects are not enough: two ``torch.save`` calls of equal tensors differ in bytes
    (a per-call serialization id), and the interleaved writes corrupt the file (seen: MemoryError
    on load). Identical bytes written at identical offsets leave a valid file whatever the order.
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def decode_payload(blob: bytes) -> dict[str, Any]:
    import io

    import torch

    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _train(spec: WorkerSpec, rank: int, world: int, device, t_start: float) -> dict[str, Any]:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from cookie.model import ModelConfig, build_model
    from cookie.config.model import LEARNED_METHODS
    from cookie.training import checkpoint as ckpt
    from cookie.training.data import read_shard
    from cookie.preprocessing import FeatureStats

    stats = FeatureStats.from_dict(spec.stats)
    config = ModelConfig.model_validate(spec.model_config)
    if config.method not in LEARNED_METHODS and world > 1:
        raise ValueError(f"method {config.method!r} fits statistics on all rows: train it with num_processes=1")

    shard = read_shard(stats, rank, world)
    sizes = [None] * world
    dist.all_gather_object(sizes, len(shard))
    if min(sizes) < 2:
        raise ValueError(f"shard sizes {sizes}: every rank needs at least 2 regions (use fewer processes)")
    _log(rank, f"world {world}, shard sizes {sizes}, views {stats.view_dims}")

    model = build_model(config, stats.view_dims).to(device)
    views = {k: torch.from_numpy(x).to(device) for k, x in shard.views.items()}
    masks = {k: torch.from_numpy(m).to(device) for k, m in shard.masks.items()}
    v, m = model.prepare(views, masks)
    model.module.prefit(v, m)
    generator = model.make_generator(device, offset=rank)
    torch.manual_seed(config.seed + rank)  # dropout draws from the global RNG: differ per rank
    if device.type == "cuda":
        torch.cuda.manual_seed(config.seed + rank)

    stages = model.stages()
    total_epochs = sum(s.epochs for s in stages)
    history: list[dict[str, Any]] = []
    epoch_seconds: list[float] = []
    start_stage, start_epoch, global_epoch = 0, 0, 0
    state = None
    if spec.resume:
        path = ckpt.latest_checkpoint(spec.checkpoint_dir)
        if path is not None:
            state = ckpt.load_checkpoint(path)
            if state["fingerprint"] != spec.fingerprint:
                raise ValueError(f"{path} was written for another model/data/world size "
                                 f"({state['fingerprint']} != {spec.fingerprint}); start a new run")
            if int(state["world_size"]) != world:
                raise ValueError(f"{path} was written by {state['world_size']} ranks, this run has {world}")
            model.module.load_state_dict(state["module"])
            _set_rng_state(state["rng"][rank], generator, device)
            start_stage, start_epoch = int(state["stage_index"]), int(state["next_epoch"])
            global_epoch = int(state["global_epoch"])
            history = list(state["history"])
            epoch_seconds = list(state.get("epoch_seconds", []))
            _log(rank, f"resumed from {path.name}: stage {start_stage}, epoch {start_epoch}, global {global_epoch}")
        else:
            _log(rank, "resume: no checkpoint in this run yet, starting from epoch 0")
    resumed_mid_stage = state is not None
    while start_stage < len(stages) and start_epoch >= stages[start_stage].epochs:
        start_stage, start_epoch, resumed_mid_stage = start_stage + 1, 0, False

    ddp = DistributedDataParallel(model.module, find_unused_parameters=True,
                                  device_ids=[device.index] if device.type == "cuda" else None)
    metrics = _MetricLog(spec.tracking_uri, spec.run_id) if rank == 0 else _MetricLog(None, None)
    t_setup = time.perf_counter() - t_start
    t_ckpt = 0.0
    stopped = False
    t_train = time.perf_counter()

    def save(stage_index: int, next_epoch: int, optimizer) -> None:
        nonlocal t_ckpt
        t = time.perf_counter()
        rngs = [None] * world
        dist.all_gather_object(rngs, _rng_state(generator, device))
        if rank == 0:
            metrics.flush()
            ckpt.save_checkpoint(spec.checkpoint_dir, {
                "run_id": spec.run_id or "", "fingerprint": spec.fingerprint, "world_size": world,
                "stage_index": stage_index, "next_epoch": next_epoch, "global_epoch": global_epoch,
                "module": {k: x.detach().cpu() for k, x in model.module.state_dict().items()},
                "optimizer": optimizer.state_dict(), "rng": rngs, "history": history,
                "epoch_seconds": epoch_seconds,
            }, keep=spec.keep_checkpoints)
        t_ckpt += time.perf_counter() - t

    for si in range(start_stage, len(stages)):
        stage = stages[si]
        optimizer = model.make_optimizer(ddp.parameters())
        first = start_epoch if si == start_stage else 0
        if si == start_stage and resumed_mid_stage and state is not None:
            optimizer.load_state_dict(state["optimizer"])
        for epoch in range(first, stage.epochs):
            t0 = time.perf_counter()
            local = _epoch(model, ddp, v, m, stage.name, optimizer, generator, world, device)
            record_vals = _reduce_mean(local, world, device)
            dt = time.perf_counter() - t0
            global_epoch += 1
            record = {"stage": stage.name, "epoch": epoch, "global_epoch": global_epoch, **record_vals,
                      "seconds": dt}
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"non-finite loss at {stage.name} epoch {epoch}: {record}")
            history.append(record)
            epoch_seconds.append(dt)
            if rank == 0:
                metrics.add({**record_vals, "epoch_seconds": dt}, step=global_epoch)
                if spec.callback is not None:
                    spec.callback(dict(record))
                if global_epoch % spec.log_every == 0:
                    metrics.flush()
            last = global_epoch == total_epochs
            stop_now = spec.stop_after_epochs is not None and global_epoch == spec.stop_after_epochs and not last
            if last or stop_now or global_epoch % spec.checkpoint_every == 0:
                save(si, epoch + 1, optimizer)
            if stop_now:
                stopped = True
                break
        if stopped:
            break
    train_s = time.perf_counter() - t_train
    metrics.flush()
    model.module.eval()
    model.fitted = not stopped

    rss = [None] * world
    dist.all_gather_object(rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    payload: dict[str, Any] = {}
    if rank == 0:
        efficiency = _profile(model, v, m) if (spec.profile and not stopped and stages) else {}
        by_stage: dict[str, list[float]] = {}
        for rec, s in zip(history, epoch_seconds):
            by_stage.setdefault(rec["stage"], []).append(s)
        efficiency["seconds_per_epoch"] = (sum(epoch_seconds) / len(epoch_seconds)) if epoch_seconds else 0.0
        efficiency["seconds_per_epoch_by_stage"] = {k: sum(x) / len(x) for k, x in by_stage.items()}
        efficiency["peak_rss_mb_per_rank"] = rss
        if not stopped:
            metrics.add(efficiency_metrics(efficiency), step=global_epoch)
            metrics.flush()
        payload = {
            "state": model.state(),
            "history": history,
            "stopped": stopped,
            "global_epoch": global_epoch,
            "total_epochs": total_epochs,
            "world_size": world,
            "shard_sizes": sizes,
            "device": str(device),
            "efficiency": efficiency,
            "timing": {
                "setup_s": t_setup,
                "train_s": train_s,
                "checkpoint_s": t_ckpt,
                "mlflow_log_s": metrics.seconds,
                "worker_total_s": time.perf_counter() - t_start,
            },
            "python": sys.version.split()[0],
        }
    return payload
