"""Benchmark of the region models (the method specification section 4), CPU or GPU.

1. Efficiency: CooKIE and GFactorCL at M = 2..6 views on the same synthetic data (planted
   factors, N regions, 32..64 features per view): objectives, trainable parameters, FLOPs of one
   training step (FlopCounterMode, forward + backward of the most expensive stage), seconds per
   epoch, peak memory of one step. Printed as a table and written as JSON lines, one object per
   method and M, to bench-results/model.jsonl.
2. Manhattan-180 (skipped if the data folder is absent): wall time of CooKIE training with the
   default config (300 intra + 300 pair epochs, full batch) on the three views, and, as a
   quality sanity check only, Ridge(alpha=1) / KFold(5, no shuffle) / clip at 0 R2 of crime and
   check-in counts on concatenated out-of-fold predictions (the method specification quotes ~0.65 / ~0.72).

Run: ``python benchmarks/bench_model.py`` (``--help`` for options). Torch runs with
``--threads`` intra-op threads (default 1: on a shared 2-core machine more threads spin against
other processes and were measured 10x slower on Manhattan-180).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cookie.model import ModelConfig, build_model
from cookie.model.efficiency import profile_model
from cookie.model.synthetic import planted_views
from cookie.preprocessing import log1p_zscore

#: the method specification's figures for a minimal implementation (mean of 3 seeds), crime / check-in R2
SANITY = {"cookie": "~0.65 / ~0.72", "pair_only": "~0.67 / ~0.75", "intra_only": "~0.53 / ~0.61"}
DEFAULT_DATA = REPO.parent / "shared" / "data" / "nyc-manhattan-180"


def efficiency(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows: list[dict] = []
    header = f"{'method':<10} {'M':>2} {'obj':>4} {'params':>10} {'GFLOP/step':>11} {'s/epoch':>8} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for m in range(args.min_views, args.max_views + 1):
        dims = [32 + (32 * k) // max(args.max_views - 1, 1) for k in range(m)]  # 32..64 features
        data = planted_views(n=args.n, n_views=m, dim=dims, noise=0.5, seed=0)
        views = {k: v.to(device) for k, v in data.views.items()}
        for method in ("cookie", "gfactorcl"):
            cfg = ModelConfig(method=method, batch_size=args.batch_size, use_club=args.club)
            model = build_model(cfg, data.view_dims).to(device)
            rep = profile_model(model, views, epochs=args.epochs).as_dict()
            rep.update(
                view_dims=dims,
                batch_size=args.batch_size,
                use_club=args.club,
                threads=torch.get_num_threads(),
                torch=torch.__version__,
                device_name=torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor() or "cpu",
                timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            rows.append(rep)
            print(
                f"{method:<10} {m:>2} {rep['n_objectives']:>4} {rep['params']:>10,} "
                f"{rep['flops_per_step'] / 1e9:>11.2f} {rep['seconds_per_epoch']:>8.3f} {rep['peak_memory_mb']:>8.1f}",
                flush=True,
            )
    return rows


def ratios(rows: list[dict]) -> None:
    by = {(r["method"], r["n_views"]): r for r in rows}
    print()
    for m in sorted({r["n_views"] for r in rows}):
        c, g = by.get(("cookie", m)), by.get(("gfactorcl", m))
        if not (c and g):
            continue
        flag = (
            ""
            if m < 3 or (c["params"] < g["params"] and c["flops_per_step"] < g["flops_per_step"])
            else "  <-- CooKIE NOT cheaper"
        )
        print(
            f"M={m}: GFactorCL / CooKIE  params x{g['params'] / c['params']:.2f}  FLOPs/step x{g['flops_per_step'] / c['flops_per_step']:.2f}"
            f"  total training FLOPs x{g['total_train_flops'] / c['total_train_flops']:.2f}  s/epoch x{g['seconds_per_epoch'] / c['seconds_per_epoch']:.2f}{flag}"
        )


def manhattan_views(root: Path) -> dict[str, torch.Tensor]:
    od = np.load(root / "hrep" / "mobility_adj.npy")[0]
    return {
        "mobility": log1p_zscore(np.hstack([od, od.T])),  # out-row + in-column counts, 360 features
        "poi": log1p_zscore(np.load(root / "hafusion" / "poi_dist.npy")),
        "landuse": log1p_zscore(np.load(root / "hafusion" / "landUse_dist.npy")),
    }


def ridge_r2(x: np.ndarray, y: np.ndarray) -> float:
    """Ridge(alpha=1), KFold(5) without shuffling, predictions clipped at 0, R2 of all OOF predictions."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    pred = np.zeros_like(y, dtype=float)
    for train, test in KFold(n_splits=5).split(x):
        pred[test] = np.clip(Ridge(alpha=1.0).fit(x[train], y[train]).predict(x[test]), 0, None)
    return float(r2_score(y, pred))


def manhattan(args: argparse.Namespace, device: torch.device) -> dict | None:
    root = Path(args.data)
    if not (root / "hrep" / "mobility_adj.npy").is_file():
        print(f"\nManhattan-180: data not found at {root}, skipped")
        return None
    views = {k: v.to(device) for k, v in manhattan_views(root).items()}
    crime = np.load(root / "hrep" / "crime_counts.npy").reshape(-1).astype(float)
    checkin = np.load(root / "hrep" / "check_counts.npy").reshape(-1).astype(float)
    print(f"\nManhattan-180: views { {k: tuple(v.shape) for k, v in views.items()} }")
    runs = []
    for method in args.manhattan_methods:
        for seed in range(args.seeds):
            cfg = ModelConfig(method=method, seed=seed)
            model = build_model(cfg, {k: v.shape[1] for k, v in views.items()}).to(device)
            start = time.perf_counter()
            model.fit(views)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            emb = model.embed(views).cpu().numpy()
            run = {
                "method": method,
                "seed": seed,
                "epochs": [(s.name, s.epochs) for s in model.stages()],
                "fit_seconds": seconds,
                "embedding_dim": emb.shape[1],
                "crime_r2": ridge_r2(emb, crime),
                "checkin_r2": ridge_r2(emb, checkin),
            }
            runs.append(run)
            print(
                f"  {method:<10} seed {seed}: fit {seconds:6.1f} s   crime R2 {run['crime_r2']:.3f}   check-in R2 {run['checkin_r2']:.3f}",
                flush=True,
            )
    summary = {}
    for method in args.manhattan_methods:
        mine = [r for r in runs if r["method"] == method]
        summary[method] = {
            k: (float(np.mean([r[k] for r in mine])), float(np.std([r[k] for r in mine])))
            for k in ("fit_seconds", "crime_r2", "checkin_r2")
        }
        s = summary[method]
        print(
            f"  {method:<10} mean of {len(mine)}: fit {s['fit_seconds'][0]:.1f} s   crime R2 {s['crime_r2'][0]:.3f} +- {s['crime_r2'][1]:.3f}"
            f"   check-in R2 {s['checkin_r2'][0]:.3f} +- {s['checkin_r2'][1]:.3f}   (method.md sanity figure: {SANITY.get(method, 'none')})"
        )
    return {"runs": runs, "summary": summary, "threads": torch.get_num_threads(), "device": str(device)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="synthetic regions")
    p.add_argument("--min-views", type=int, default=2)
    p.add_argument("--max-views", type=int, default=6)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per stage (after one warm-up epoch)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per step (default: full batch)")
    p.add_argument("--club", action="store_true", help="include the CLUB terms in both methods")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="nyc-manhattan-180 folder")
    p.add_argument("--seeds", type=int, default=3, help="Manhattan-180 seeds")
    p.add_argument("--manhattan-methods", nargs="+", default=["cookie"])
    p.add_argument("--skip-efficiency", action="store_true")
    p.add_argument("--skip-manhattan", action="store_true")
    p.add_argument("--out", default=str(REPO / "bench-results" / "model.jsonl"))
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} thread(s)\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_efficiency:
        rows = efficiency(args, device)
        with out.open("w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        ratios(rows)
        print(f"\nwrote {len(rows)} rows to {out}")
    if not args.skip_manhattan:
        result = manhattan(args, device)
        if result is not None:
            path = out.with_name(out.stem + "-manhattan.json")
            path.write_text(json.dumps(result, indent=1))
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
