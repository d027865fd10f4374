"""Time the feature job per config and table; print a table and write bench-results/features.jsonl.

    python benchmarks/bench_features.py [conf/helsinki.yaml conf/manhattan180.yaml ...]

Runs in one Spark session (local[*]), so the session start is reported once, separately.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    configs = argv or ["conf/helsinki.yaml", "conf/manhattan180.yaml", "conf/nyc_tracts.yaml"]
    from cookie.config import load_config
    from cookie.config.project import shared_data_dir
    from cookie.etl.job import build_features
    from cookie.spark import SparkSettings, build_session

    t0 = time.time()
    spark = build_session(SparkSettings(app_name="cookie-bench-features"))
    start = time.time() - t0
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    rows = []
    shared = shared_data_dir(REPO)
    for c in configs:
        cfg = load_config(REPO / c, base_dir=str(REPO))
        if ("manhattan" in c or "nyc" in c) and not shared.is_dir():
            print(f"skip {c}: {shared} not found")
            continue
        report = build_features(spark, cfg)
        for t in report.tables:
            rows.append(
                {
                    "config": cfg.name,
                    "table": t.table,
                    "rows": t.rows,
                    "features": t.features,
                    "seconds": round(t.seconds, 2),
                    "cores": os.cpu_count(),
                }
            )
        rows.append(
            {
                "config": cfg.name,
                "table": "(whole job)",
                "rows": None,
                "features": None,
                "seconds": round(report.seconds, 2),
                "cores": os.cpu_count(),
            }
        )
    print(f"Spark session start (with Sedona + Delta check): {start:.1f} s, cores: {os.cpu_count()}")
    print(f"{'config':<14}{'table':<24}{'rows':>8}{'features':>10}{'seconds':>10}")
    for r in rows:
        print(f"{r['config']:<14}{r['table']:<24}{r['rows'] or '':>8}{r['features'] or '':>10}{r['seconds']:>10.1f}")
    with open(out / "features.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
