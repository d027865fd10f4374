"""What every TorchDistributor rank runs: DDP training of a RegionModel on the rank's shard.

:func:`train_worker` is importable (pickled by reference), takes one picklable
:class:`WorkerSpec` and returns rank 0's payload on every rank (broadcast, because in local mode
TorchDistributor returns whichever rank wrote its output file last: the stack notes P4.1).

Per rank (:class:`_RankRun`, one method per phase):

1. *setup*: read the shard from the Delta tables' Parquet files (:mod:`cookie.training.data`), build
   the model from ``model:``, fit its statistics (``prefit``, with sums all-reduced over the ranks, so
   the statistics-only baselines fit the same values with any number of processes), seed the
   generator (``make_generator(offset=rank)``) and the global RNG (dropout: ``seed + rank``);
2. *resume*: load the newest checkpoint of the run (model, every rank's RNG states, position);
3. *the epoch loop*: wrap ``model.module`` in ``DistributedDataParallel`` with
   ``find_unused_parameters=True`` (stage ``intra`` leaves the shared heads unused) -- unless it has no
   trainable parameters or no stages (the baselines) -- and drive ``model.stages()`` /
   ``model.loss(..., module=ddp)``; gradients are averaged over ranks by DDP, each rank's contrastive
   negatives are its own rows;
4. *checkpoint*: every ``checkpoint_every`` epochs, at the last epoch and where the run stops;
5. *payload*: rank 0's model state, history, efficiency figures and timings.

Rank 0 alone logs to MLflow (the driver's run id, an absolute tracking URI; metrics buffered and sent
every ``log_every`` epochs and at every checkpoint), writes the checkpoints (which carry every rank's
RNG states) and reports progress through :mod:`logging` (logger ``cookie.train``, a handler on stderr,
which TorchDistributor's local mode streams to the driver's console): stage start and end, and every
``progress_every`` epochs plus the first and last epoch of each stage, with loss, s/epoch and the ETA.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from cookie.model.base import Masks, RegionModel, Stage, Views
    from cookie.model.early_stopping import EarlyStopping

LOGGER = "cookie.train"
log = logging.getLogger(LOGGER)


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
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 10
    progress_every: int = 25
    metrics_logged_through: int = 0  # global epochs whose metrics the run already holds (resume)
    torch_threads: int = 1
    use_gpu: bool = False
    profile: bool = True
    callback: Callable[[dict[str, Any]], None] | None = None  # rank 0, after every epoch (tests, hooks)
    extra: dict[str, Any] = field(default_factory=dict)


def configure_worker_logging(rank: int) -> None:
    """``cookie.train`` -> stderr: INFO on rank 0, warnings only on the others (one voice per run)."""
    if not any(getattr(h, "_cookie_worker", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {LOGGER} [rank {rank}]: %(message)s"))
        handler._cookie_worker = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    log.propagate = False


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
        assert self.run_id is not None  # a client exists only with a run id
        t = time.perf_counter()
        for i in range(0, len(self.buffer), 1000):
            self.client.log_batch(self.run_id, metrics=self.buffer[i : i + 1000])
        self.buffer = []
        self.seconds += time.perf_counter() - t


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    import torch

    out = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    import torch

    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _reduce_mean(values: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    import torch
    import torch.distributed as dist

    if world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(x) / world for k, x in zip(keys, t.tolist())}


def sum_over_ranks(world: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ``reduce`` of :meth:`RegionModule.prefit`: a tensor summed over every rank (a copy;
    the identity with one rank)."""
    import torch.distributed as dist

    def reduce(t: torch.Tensor) -> torch.Tensor:
        if world == 1:
            return t
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    return reduce


def _epoch(
    model: RegionModel,
    ddp: DistributedDataParallel | None,
    views: Views,
    masks: Masks,
    stage: str,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    world: int,
    device: torch.device,
) -> dict[str, float]:
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
        total.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        optimizer.step()
        sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {k: s / max(steps, 1) for k, s in sums.items()}


def _profile(model: RegionModel, views: Views, masks: Masks) -> dict[str, Any]:
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


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def train_worker(spec: WorkerSpec) -> bytes:
    """Train on this rank's shard; return rank 0's payload (model state, history, timings) encoded
    by :func:`encode_payload` (decode with :func:`decode_payload`), identical on every rank."""
    import torch
    import torch.distributed as dist

    t_start = time.perf_counter()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    configure_worker_logging(rank)
    torch.set_num_threads(spec.torch_threads)
    use_cuda = bool(spec.use_gpu) and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    with process_group("nccl" if use_cuda else "gloo"):
        payload = _RankRun(spec, rank, world, device, t_start).run()
        blob = encode_payload(payload) if rank == 0 else None
        box = [blob]
        dist.broadcast_object_list(box, src=0)
        out = box[0]
        assert out is not None  # rank 0's bytes, on every rank after the broadcast
        return out


@contextmanager
def process_group(backend: str) -> Iterator[None]:
    """The default process group of one rank's run, torn down while the interpreter is still whole.

    ``DistributedDataParallel`` keeps a reference to the group from inside reference cycles. Left to the
    garbage collector, the group's last owner can die at interpreter exit, after
    :func:`torch.distributed.destroy_process_group`; Gloo's threads then end in ``std::terminate``
    (SIGABRT, "terminate called without an active exception"; 4 of 12 runs of a minimal two-rank DDP
    script). torchrun reports that rank failed although its training finished, and with barrier tasks
    the other ranks' agents wait out their 300 s exit barrier. So the cycles are collected first, then
    the group is destroyed.
    """
    import torch.distributed as dist

    dist.init_process_group(backend)
    try:
        yield
    finally:
        gc.collect()
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

    payload: dict[str, Any] = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    return payload


@dataclass
class _Position:
    """Where the run stands: the next (stage, epoch) to train and what is done so far."""

    stage_index: int = 0
    next_epoch: int = 0
    global_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    optimizer_state: dict[str, Any] | None = None  # of the stage being resumed mid-way
    early_stop: dict[str, Any] | None = None  # EarlyStopping state of the stage being resumed mid-way
    best_epochs: dict[str, int] = field(default_factory=dict)  # stage -> epoch whose weights were kept


class _RankRun:
    """One rank's run, phase by phase: :meth:`setup`, :meth:`resume`, :meth:`train_stages`
    (with :meth:`save_checkpoint`) and :meth:`payload`."""

    def __init__(self, spec: WorkerSpec, rank: int, world: int, device: torch.device, t_start: float) -> None:
        self.spec, self.rank, self.world, self.device, self.t_start = spec, rank, world, device, t_start
        self.t_checkpoint = 0.0
        self.stopped = False
        self.session_seconds: list[float] = []  # epochs trained by this process (for the ETA)
        self.early_stopping = False

    def run(self) -> dict[str, Any]:
        self.setup()
        pos = self.resume()
        self.ddp = self.wrap()
        self.metrics = (
            _MetricLog(self.spec.tracking_uri, self.spec.run_id) if self.rank == 0 else _MetricLog(None, None)
        )
        self.t_setup = time.perf_counter() - self.t_start
        t = time.perf_counter()
        self.train_stages(pos)
        if not self.stopped:
            self.model.module.postfit(self.v, self.m, reduce=sum_over_ranks(self.world))
        self.train_s = time.perf_counter() - t
        self.metrics.flush()
        self.model.module.eval()
        self.model.fitted = not self.stopped
        return self.payload(pos)

    # ---- 1. setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        import numpy as np
        import torch
        import torch.distributed as dist

        from cookie.config.model import LEARNED_METHODS
        from cookie.exceptions import ConfigError
        from cookie.model import ModelConfig, build_model
        from cookie.model.base import subset_rows
        from cookie.model.early_stopping import MIN_VAL_ROWS, holdout_mask
        from cookie.preprocessing import FeatureStats
        from cookie.training.data import read_shard

        stats = FeatureStats.from_dict(self.spec.stats)
        config = ModelConfig.model_validate(self.spec.model_config)
        shard = read_shard(stats, self.rank, self.world)
        sizes: list[Any] = [None] * self.world
        dist.all_gather_object(sizes, len(shard))
        if config.method in LEARNED_METHODS and min(sizes) < 2:
            raise ConfigError(f"shard sizes {sizes}: every rank needs at least 2 regions (use fewer processes)")
        self.sizes = sizes
        log.info("world %d, shard sizes %s, views %s, method %s", self.world, sizes, stats.view_dims, config.method)

        model = build_model(config, stats.view_dims).to(self.device)
        model.module.set_count_space({v.name: (v.mean, v.std, v.count_spaces()) for v in stats.views})
        views = {k: torch.from_numpy(x).to(self.device) for k, x in shard.views.items()}
        masks = {k: torch.from_numpy(m).to(self.device) for k, m in shard.masks.items()}
        self.v, self.m = model.prepare(views, masks)
        model.module.prefit(self.v, self.m, reduce=sum_over_ranks(self.world))
        hold = holdout_mask(len(shard), config, offset=self.rank) if model.stages() else None
        held: list[Any] = [None] * self.world
        dist.all_gather_object(held, 0 if hold is None else int(hold.sum()))
        self.early_stopping = min(held) > 0  # every rank holds regions out, or none does
        if self.early_stopping and hold is not None:
            keep = torch.from_numpy(np.flatnonzero(~hold)).to(self.device)
            out = torch.from_numpy(np.flatnonzero(hold)).to(self.device)
            self.val_v, self.val_m = subset_rows(self.v, self.m, out)
            self.v, self.m = subset_rows(self.v, self.m, keep)
            log.info(
                "early stopping: %d regions held out (%s per rank), held-out loss every %d epochs, patience %d",
                sum(held),
                held,
                config.val_every,
                config.patience,
            )
        elif model.stages() and config.val_fraction > 0:
            log.info(
                "early stopping off: under %d held-out regions per rank (%s); every epoch is trained",
                MIN_VAL_ROWS,
                held,
            )
        self.generator = model.make_generator(self.device, offset=self.rank)
        torch.manual_seed(config.seed + self.rank)  # dropout draws from the global RNG: differ per rank
        if self.device.type == "cuda":
            torch.cuda.manual_seed(config.seed + self.rank)
        self.model = model
        self.stages = model.stages()
        self.total_epochs = sum(s.epochs for s in self.stages)
        if not self.stages:
            log.info(
                "%s fits statistics only: fitted on %d regions over %d rank(s)", config.method, sum(sizes), self.world
            )

    # ---- 2. resume --------------------------------------------------------------------------
    def resume(self) -> _Position:
        """The position to start from: the newest checkpoint's with ``resume``, else the beginning;
        stages already complete are skipped."""
        from cookie.exceptions import ConfigError
        from cookie.training import checkpoint as ckpt

        pos = _Position()
        path = ckpt.latest_checkpoint(self.spec.checkpoint_dir) if self.spec.resume else None
        if self.spec.resume and path is None:
            log.info("resume: no checkpoint in this run yet, starting from epoch 0")
        if path is not None:
            state = ckpt.load_checkpoint(path)
            if state["fingerprint"] != self.spec.fingerprint:
                raise ConfigError(
                    f"{path} was written for another model/data/world size "
                    f"({state['fingerprint']} != {self.spec.fingerprint}); start a new run"
                )
            if int(state["world_size"]) != self.world:
                raise ConfigError(f"{path} was written by {state['world_size']} ranks, this run has {self.world}")
            self.model.module.load_state_dict(state["module"])
            _set_rng_state(state["rng"][self.rank], self.generator, self.device)
            pos = _Position(
                int(state["stage_index"]),
                int(state["next_epoch"]),
                int(state["global_epoch"]),
                list(state["history"]),
                list(state.get("epoch_seconds", [])),
                state["optimizer"],
                state.get("early_stop"),
                dict(state.get("best_epochs", {})),
            )
            log.info(
                "resumed from %s: stage %d, epoch %d, global epoch %d/%d",
                path.name,
                pos.stage_index,
                pos.next_epoch,
                pos.global_epoch,
                self.total_epochs,
            )
        while pos.stage_index < len(self.stages) and pos.next_epoch >= self.stages[pos.stage_index].epochs:
            pos.stage_index, pos.next_epoch, pos.optimizer_state = pos.stage_index + 1, 0, None
        return pos

    def wrap(self) -> DistributedDataParallel | None:
        """``DistributedDataParallel`` around the module, or None when there is nothing to train."""
        from torch.nn.parallel import DistributedDataParallel

        trainable = any(p.requires_grad for p in self.model.module.parameters())
        if not self.stages or not trainable:
            return None
        return DistributedDataParallel(
            self.model.module,
            find_unused_parameters=True,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
        )

    # ---- 3. the epoch loop ------------------------------------------------------------------
    def train_stages(self, pos: _Position) -> None:
        for si in range(pos.stage_index, len(self.stages)):
            self.train_stage(si, pos)
            if self.stopped:
                return

    def train_stage(self, si: int, pos: _Position) -> None:
        stage = self.stages[si]
        params = self.ddp.parameters() if self.ddp is not None else self.model.module.parameters()
        optimizer = self.model.make_optimizer(params)
        first = pos.next_epoch if si == pos.stage_index else 0
        if si == pos.stage_index and pos.optimizer_state is not None:
            optimizer.load_state_dict(pos.optimizer_state)
        t_stage = time.perf_counter()
        log.info(
            "stage %s (%d/%d): epochs %d..%d of %d",
            stage.name,
            si + 1,
            len(self.stages),
            first + 1,
            stage.epochs,
            stage.epochs,
        )
        from cookie.model.early_stopping import EarlyStopping

        stopper = EarlyStopping.from_config(self.model.config) if self.early_stopping else None
        if stopper is not None and si == pos.stage_index and pos.early_stop is not None:
            stopper.load_state_dict(pos.early_stop)
        record: dict[str, Any] = {}
        trained = 0
        for epoch in range(first, stage.epochs):
            record = self.train_epoch(stage, epoch, optimizer, pos)
            trained += 1
            self.report_progress(stage, epoch, record, pos)
            early = False
            if stopper is not None and stopper.due(epoch, epoch == stage.epochs - 1):
                early = self.check_held_out(stopper, stage, epoch, record, pos)
            end_of_stage = early or epoch == stage.epochs - 1
            if end_of_stage and stopper is not None:
                stopper.restore(self.model.module)
                pos.best_epochs[stage.name] = stopper.best_epoch
                log.info(
                    "stage %s: %s at epoch %d; keeping the weights of epoch %d (held-out loss %.4f)",
                    stage.name,
                    "stopped early" if early else "reached its last epoch",
                    epoch + 1,
                    stopper.best_epoch + 1,
                    stopper.best,
                )
            last = end_of_stage and si == len(self.stages) - 1
            stop_now = (
                self.spec.stop_after_epochs is not None and pos.global_epoch == self.spec.stop_after_epochs and not last
            )
            if end_of_stage or stop_now or pos.global_epoch % self.spec.checkpoint_every == 0:
                next_epoch = stage.epochs if end_of_stage else epoch + 1
                self.save_checkpoint(si, next_epoch, optimizer, pos, None if end_of_stage else stopper)
            if stop_now:
                self.stopped = True
                log.info(
                    "stopped after global epoch %d/%d (resumable with --resume)", pos.global_epoch, self.total_epochs
                )
                return
            if early:
                break
        if record:
            log.info(
                "stage %s done: %d epochs in %s, final loss %.4f",
                stage.name,
                trained,
                format_seconds(time.perf_counter() - t_stage),
                record["loss"],
            )

    def check_held_out(
        self, stopper: EarlyStopping, stage: Stage, epoch: int, record: dict[str, Any], pos: _Position
    ) -> bool:
        """Held-out loss over all ranks (same figure on every rank, so they stop together); True to stop."""
        local = {"val_loss": self.model.validation_loss(self.val_v, self.val_m, stage.name)}
        val = _reduce_mean(local, self.world, self.device)["val_loss"]
        record["val_loss"] = val
        if self.rank == 0 and pos.global_epoch > self.spec.metrics_logged_through:
            self.metrics.add({"val_loss": val}, step=pos.global_epoch)
        return stopper.update(epoch, val, self.model.module)

    def train_epoch(self, stage: Stage, epoch: int, optimizer: torch.optim.Optimizer, pos: _Position) -> dict[str, Any]:
        t0 = time.perf_counter()
        local = _epoch(
            self.model, self.ddp, self.v, self.m, stage.name, optimizer, self.generator, self.world, self.device
        )
        values = _reduce_mean(local, self.world, self.device)
        dt = time.perf_counter() - t0
        pos.global_epoch += 1
        record: dict[str, Any] = {
            "stage": stage.name,
            "epoch": epoch,
            "global_epoch": pos.global_epoch,
            **values,
            "seconds": dt,
        }
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"non-finite loss at {stage.name} epoch {epoch}: {record}")
        pos.history.append(record)
        pos.epoch_seconds.append(dt)
        self.session_seconds.append(dt)
        if self.rank == 0:
            if pos.global_epoch > self.spec.metrics_logged_through:  # a resumed run repeats no metric
                self.metrics.add({**values, "epoch_seconds": dt}, step=pos.global_epoch)
            if self.spec.callback is not None:
                self.spec.callback(dict(record))
            if pos.global_epoch % self.spec.log_every == 0:
                self.metrics.flush()
        return record

    def report_progress(self, stage: Stage, epoch: int, record: dict[str, Any], pos: _Position) -> None:
        """First and last epoch of a stage, and every ``progress_every`` epochs: loss, s/epoch, ETA."""
        done = epoch + 1
        if not (epoch == 0 or done == stage.epochs or done % self.spec.progress_every == 0):
            return
        recent = self.session_seconds[-50:]
        per_epoch = sum(recent) / len(recent)
        eta = per_epoch * (self.total_epochs - pos.global_epoch)
        log.info(
            "%s epoch %d/%d (global %d/%d): loss %.4f, %.3f s/epoch, ETA %s",
            stage.name,
            done,
            stage.epochs,
            pos.global_epoch,
            self.total_epochs,
            record["loss"],
            per_epoch,
            format_seconds(eta),
        )

    # ---- 4. checkpoint ----------------------------------------------------------------------
    def save_checkpoint(
        self,
        stage_index: int,
        next_epoch: int,
        optimizer: torch.optim.Optimizer,
        pos: _Position,
        stopper: EarlyStopping | None = None,
    ) -> None:
        """Every rank's RNG states gathered; rank 0 flushes the metrics and writes the file."""
        import torch.distributed as dist

        from cookie.training import checkpoint as ckpt

        t = time.perf_counter()
        rngs: list[Any] = [None] * self.world
        dist.all_gather_object(rngs, _rng_state(self.generator, self.device))
        if self.rank == 0:
            self.metrics.flush()
            ckpt.save_checkpoint(
                self.spec.checkpoint_dir,
                {
                    "run_id": self.spec.run_id or "",
                    "fingerprint": self.spec.fingerprint,
                    "world_size": self.world,
                    "stage_index": stage_index,
                    "next_epoch": next_epoch,
                    "global_epoch": pos.global_epoch,
                    "module": {k: x.detach().cpu() for k, x in self.model.module.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "rng": rngs,
                    "history": pos.history,
                    "epoch_seconds": pos.epoch_seconds,
                    "early_stop": None if stopper is None else stopper.state_dict(),
                    "best_epochs": pos.best_epochs,
                },
                keep=self.spec.keep_checkpoints,
            )
        self.t_checkpoint += time.perf_counter() - t

    # ---- 5. payload -------------------------------------------------------------------------
    def payload(self, pos: _Position) -> dict[str, Any]:
        """Rank 0's result (every rank takes part in the gathers; the others return ``{}``)."""
        import torch.distributed as dist

        rss: list[Any] = [None] * self.world
        dist.all_gather_object(rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        if self.rank != 0:
            return {}
        efficiency = self.efficiency(pos, rss)
        if not self.stopped:
            self.metrics.add(efficiency_metrics(efficiency), step=pos.global_epoch)
            self.metrics.flush()
        return {
            "state": self.model.state(),
            "history": pos.history,
            "stopped": self.stopped,
            "global_epoch": pos.global_epoch,
            "total_epochs": self.total_epochs,
            "best_epochs": pos.best_epochs,
            "world_size": self.world,
            "shard_sizes": self.sizes,
            "device": str(self.device),
            "efficiency": efficiency,
            "timing": {
                "setup_s": self.t_setup,
                "train_s": self.train_s,
                "checkpoint_s": self.t_checkpoint,
                "mlflow_log_s": self.metrics.seconds,
                "worker_total_s": time.perf_counter() - self.t_start,
            },
            "python": sys.version.split()[0],
        }

    def efficiency(self, pos: _Position, rss: list[Any]) -> dict[str, Any]:
        eff = _profile(self.model, self.v, self.m) if (self.spec.profile and not self.stopped and self.stages) else {}
        by_stage: dict[str, list[float]] = {}
        for rec, s in zip(pos.history, pos.epoch_seconds):
            by_stage.setdefault(rec["stage"], []).append(s)
        eff["seconds_per_epoch"] = (sum(pos.epoch_seconds) / len(pos.epoch_seconds)) if pos.epoch_seconds else 0.0
        eff["seconds_per_epoch_by_stage"] = {k: sum(x) / len(x) for k, x in by_stage.items()}
        eff["peak_rss_mb_per_rank"] = rss
        return eff
