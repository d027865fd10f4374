"""The whole chain on one config: features -> train -> evaluate -> register/promote, then a summary.

    python jobs/demo.py [--config conf/helsinki.yaml]      (what `make demo` runs)

Each step is the verb a user runs on its own (``python -m cookie features|train|evaluate|promote``, or
jobs/build_features.py, train.py, evaluate.py, promote.py), called through :func:`cookie.cli.main` in this one
process, as ``make bench-quality`` does: so the demo runs exactly what production runs, and the steps share one
Python process and one Spark session instead of starting a JVM and importing torch, Spark and MLflow per step.
The demo ends with the metrics and where everything is.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the package next to it

STEPS = [
    ("features", "regions and view/label Delta tables"),
    ("train", "TorchDistributor training, MLflow run, registered model, embeddings table"),
    ("evaluate", "downstream tasks on the frozen embeddings, report and maps"),
    ("promote", "champion alias if the challenger is better"),
]


def run_step(i: int, verb: str, what: str, config: str) -> tuple[float, list[str]]:
    """One verb through :func:`cookie.cli.main`; its printed output is shown and returned."""
    from cookie.cli import main

    print(f"\n[{i}/{len(STEPS)}] {verb}: {what}", flush=True)
    t0 = time.time()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = main([verb, "--config", config], log_level=logging.WARNING)
    finally:  # shown even when the step raised
        lines = out.getvalue().splitlines()
        for line in lines:
            print(f"    {line}", flush=True)
    seconds = time.time() - t0
    if rc != 0:
        raise SystemExit(f"step {verb} failed (exit {rc}) after {seconds:.0f} s; its error is above")
    print(f"    [{verb} done in {seconds:.0f} s]", flush=True)
    return seconds, lines


def map_path(evaluate_output: list[str]) -> Path | None:
    """The interactive map the evaluate step wrote: the ``"map"`` entry of the JSON summary it prints."""
    for line in evaluate_output:
        m = re.match(r'\s*"map": (".*"|null),?\s*$', line)
        if m and m.group(1) != "null":
            return Path(json.loads(m.group(1)))
    return None


def summary(config: str, timings: dict[str, float], html_map: Path | None = None) -> None:
    from cookie.config import load_config
    from cookie.evaluation.pipeline import evaluation_config

    cfg = load_config(REPO / config, base_dir=str(REPO))
    import mlflow
    from mlflow import MlflowClient

    from cookie.storage.tracking import registered_model_name, tracking_uri

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    name = registered_model_name(cfg)
    rows = []
    for alias in ("challenger", "champion"):
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except Exception:
            continue
        metrics = {k[len("eval.") :]: v for k, v in mv.tags.items() if k.startswith("eval.")}
        rows.append((alias, mv.version, mv.run_id, metrics))
    print("\n" + "=" * 78)
    print(
        f"demo on {cfg.name}: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f" (total {sum(timings.values()):.0f} s)"
    )
    if rows:

        def num(m: dict[str, str], k: str) -> float | None:
            try:
                return float(m[k])
            except (KeyError, ValueError):
                return None

        keys = sorted({k for _, _, _, m in rows for k in m if not k.endswith("_std") and num(m, k) is not None})
        print(f"\n{'metric (mean +- std)':<40}" + "".join(f"{a + ' v' + str(v):>22}" for a, v, _, _ in rows))
        for k in keys:
            cells = []
            for _, _, _, m in rows:
                mean, std = num(m, k), num(m, k + "_std")
                cell = "-" if mean is None else f"{mean:.4f}" + (f" +- {std:.4f}" if std is not None else "")
                cells.append(f"{cell:>22}")
            print(f"{k:<40}" + "".join(cells))
    wh = cfg.warehouse_path()
    print("\nwhere to look:")
    print(f"  feature tables   {wh}/regions, {wh}/view_*, {wh}/label_*")
    print(f"  embeddings       {wh}/embeddings (Delta; one version per trained model)")
    for alias, version, run_id, _ in rows:
        print(f"  MLflow           model {name} v{version} @{alias}, training run {run_id}")
    print(f"  reports          {Path(cfg.resolve(evaluation_config(cfg).report_dir)) / cfg.name}")
    shown = html_map if html_map else "(none written: maps off, or regions without geometry)"
    print(f"  interactive map  {shown}   (one file, opens offline in a browser)")
    print(f"  MLflow UI        make mlflow-ui   (tracking store {uri}), then open http://127.0.0.1:5000")
    print(f'  look up a vector make lookup CONFIG={config} ARGS="--alias champion --lat 60.17 --lon 24.94"')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/helsinki.yaml")
    args = parser.parse_args(argv)
    os.chdir(REPO)  # relative paths (the config, its warehouse) mean what they mean for make demo
    timings: dict[str, float] = {}
    html_map = None
    for i, (verb, what) in enumerate(STEPS, start=1):
        timings[verb], lines = run_step(i, verb, what, args.config)
        if verb == "evaluate":
            html_map = map_path(lines)
    summary(args.config, timings, html_map)
    return 0


if __name__ == "__main__":
    sys.exit(main())
