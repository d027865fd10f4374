"""Training and embedding at scale: an H3 grid of 100,000+ regions through the product's own jobs.

    python benchmarks/bench_train_scale.py [--resolution 8] [--points 1000000] [--processes 1 2]

Two synthetic point layers (uniform, seeded: ``poi`` with 8 categories, ``amenity`` with 5) over a box of
about 270 km x 290 km make two views over an H3 resolution-8 grid (about 107,000 cells). Then, each in its
own process, as users run them:

* ``python -m cookie features``: the regions and both views (wall time, peak memory of the process tree);
* ``python -m cookie train --num-processes N`` for each N: mini-batch training through TorchDistributor,
  registration and the embeddings table. From the job's ``--result`` file: seconds per epoch, peak resident
  memory per rank, embeddings rows written per second; wall time and peak tree memory measured outside;
* the registered model applied to every region with ``mlflow.pyfunc.spark_udf`` over the pyfunc's input
  frame (:func:`cookie.training.data.flat_features`), written to Spark's ``noop`` sink: rows per second.

Nothing is collected to the driver: ranks read their shards from the Delta files, embeddings are computed
in Spark tasks. One JSON line per step goes to ``bench-results/train_scale.jsonl``; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_etl import run_measured, write_geoparquet

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-results"
WORK = OUT / "train-scale"
BBOX = (-75.5, 39.8, -72.3, 42.4)  # about 270 km x 290 km around New York: ~107,000 H3 cells at resolution 8
LAYERS = {"poi": 8, "amenity": 5}


def make_points(name: str, n: int, categories: int, seed: int) -> Path:
    """``n`` points with a category over :data:`BBOX`, denser towards its centre so regions differ in more than
    noise, as GeoParquet (written once, then reused)."""
    import numpy as np

    path = WORK / "data" / f"{name}_{n}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    xy = np.column_stack(
        [
            np.clip(rng.normal((BBOX[0] + BBOX[2]) / 2, (BBOX[2] - BBOX[0]) / 4, n), BBOX[0], BBOX[2]),
            np.clip(rng.normal((BBOX[1] + BBOX[3]) / 2, (BBOX[3] - BBOX[1]) / 4, n), BBOX[1], BBOX[3]),
        ]
    )
    import shapely

    categories_ = np.char.add("c", rng.integers(0, categories, n).astype(str))
    return write_geoparquet(path, [(shapely.points(xy), categories_)], "Point")


def write_config(resolution: int, points: int, epochs: int, batch_size: int) -> Path:
    import yaml

    sources = {
        name: {"kind": "vector", "path": str(make_points(name, points, k, seed)), "format": "geoparquet"}
        for seed, (name, k) in enumerate(LAYERS.items())
    }
    cfg = {
        "name": f"scale_h3r{resolution}",
        "description": "bench_train_scale: two synthetic point views over an H3 grid of 100,000+ cells",
        "output": {"warehouse": str(WORK / "warehouse")},
        "sources": sources,
        "regions": {"kind": "h3", "resolution": resolution, "bbox": list(BBOX)},
        # context off, as when this benchmark's figures were first measured (it would double each view's width)
        "views": [
            {"name": name, "kind": "points", "source": name, "category_column": "category", "context": []}
            for name in LAYERS
        ],
        "model": {
            "method": "cookie",
            "embed_dim": 32,
            "hidden_dim": 128,
            "epochs_intra": epochs,
            "epochs_pair": epochs,
            "batch_size": batch_size,
            "seed": 0,
        },
        "train": {
            "tracking_uri": f"sqlite:///{WORK / 'mlflow.db'}",
            "checkpoint_dir": str(WORK / "checkpoints"),
            "profile": True,
        },
        "evaluation": {"tasks": []},
    }
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "scale.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


UDF = """
import json, sys, time
import mlflow
from pyspark.sql import functions as F
from cookie.config import load_config
from cookie.preprocessing import FeatureStats
from cookie.spark import build_session, settings_for
from cookie.storage.tracking import configure
from cookie.training.data import compute_stats, flat_features

cfg = load_config(sys.argv[1])
configure(cfg)
spark = build_session(settings_for(cfg, "spark-udf"))
stats = compute_stats(spark, cfg)
frame = flat_features(spark, cfg, stats)
n = frame.count()
t0 = time.time()
udf = mlflow.pyfunc.spark_udf(spark, sys.argv[2], result_type="array<float>", env_manager="local")
cols = [c for c in frame.columns if c != "region_id"]
out = frame.select("region_id", udf(F.struct(*[F.col(c) for c in cols])).alias("embedding"))
out.write.format("noop").mode("overwrite").save()
seconds = time.time() - t0
dim = len(out.first()["embedding"])
print(json.dumps({"rows": n, "seconds": seconds, "dim": dim}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=8)
    ap.add_argument("--points", type=int, default=1_000_000, help="points per layer")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=2, help="epochs per stage")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--skip-features", action="store_true", help="reuse the tables of an earlier run")
    args = ap.parse_args(argv)
    cfg_path = write_config(args.resolution, args.points, args.epochs, args.batch_size)
    py = sys.executable
    rows: list[dict] = []

    def record(row: dict) -> None:
        rows.append(row)
        OUT.mkdir(exist_ok=True)
        with open(OUT / "train_scale.jsonl", "a") as f:
            f.write(json.dumps({"config": str(cfg_path.relative_to(REPO)), **row}) + "\n")

    if not args.skip_features:
        wall, peak, out = run_measured([py, "-m", "cookie", "features", "--config", str(cfg_path)])
        regions = next(int(line.split()[1]) for line in out.splitlines() if line.startswith("regions "))
        record({"step": "features", "regions": regions, "wall_s": round(wall, 1), "peak_gb": round(peak / 2**30, 2)})
    last = None
    for n in args.processes:
        result = WORK / f"train_{n}.json"
        wall, peak, _ = run_measured(
            [py, "-m", "cookie", "train", "--config", str(cfg_path), "--num-processes", str(n), "--result", str(result)]
        )
        r = json.loads(result.read_text())
        eff, timing = r["efficiency"], r["timing"]
        regions_n = rows[0]["regions"] if rows and rows[0]["step"] == "features" else None
        record(
            {
                "step": f"train {n} process{'es' if n > 1 else ''}",
                "regions": regions_n,
                "wall_s": round(wall, 1),
                "peak_gb": round(peak / 2**30, 2),
                "seconds_per_epoch": round(float(eff.get("seconds_per_epoch", 0.0)), 2),
                "peak_rss_mb_per_rank": [round(float(x), 0) for x in eff.get("peak_rss_mb_per_rank", [])],
                "train_s": round(float(timing.get("train_s", 0.0)), 1),
                "embeddings_s": round(float(timing.get("embeddings_s", 0.0)), 1),
                "embeddings_rows_per_s": (
                    round(regions_n / timing["embeddings_s"]) if regions_n and timing.get("embeddings_s") else None
                ),
                "model": f"{r['model_name']} v{r['model_version']}",
            }
        )
        last = r
    if last is not None:
        uri = f"models:/{last['model_name']}/{last['model_version']}"
        wall, peak, out = run_measured([py, "-c", UDF, str(cfg_path), uri])
        u = json.loads(out.strip().splitlines()[-1])
        record(
            {
                "step": "spark_udf embed",
                "regions": u["rows"],
                "wall_s": round(wall, 1),
                "peak_gb": round(peak / 2**30, 2),
                "udf_s": round(u["seconds"], 1),
                "rows_per_s": round(u["rows"] / u["seconds"]),
                "model": uri,
            }
        )
    print(f"{'step':<20}{'regions':>9}{'wall s':>8}{'peak GB':>9}{'s/epoch':>9}{'rank RSS MB':>14}{'emb rows/s':>12}")
    for r in rows:
        rss = "/".join(str(int(x)) for x in r.get("peak_rss_mb_per_rank", []))
        rate = r.get("embeddings_rows_per_s") or r.get("rows_per_s") or ""
        print(
            f"{r['step']:<20}{r.get('regions') or '':>9}{r['wall_s']:>8.1f}{r['peak_gb']:>9.2f}"
            f"{r.get('seconds_per_epoch', ''):>9}{rss:>14}{rate:>12}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
