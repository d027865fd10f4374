"""The points view at scale: the feature job (``python -m cookie features``) against geopandas.

    python benchmarks/bench_etl.py [--points 1000000 10000000 30000000] [--regions tracts_wgs84.geojson]
                                   [--lines 1000000] [--polygons 300000]

Uniform random points (seeded, 8 categories) over the bounding box of the NYC census tracts in
``../shared/data/nyc-census-tracts-2325`` are written once as GeoParquet (WKB points, cached under
``bench-results/etl-data``). For each size, in separate processes so their memory is their own:

* **ours**: the feature job as users run it, on a config with the tracts as regions and one points view
  by category (tables built and written one at a time, ``spark.parallel_tables: 1``, so the view's time is
  not shared with the regions table's write): whole-job wall time (JVM start included), the view's own
  seconds from the run log, peak memory of the whole process tree (driver JVM and Python workers);
* **geopandas**: ``read_parquet`` + ``sjoin(predicate="within")`` + ``groupby`` per tract and category,
  on one core, wall time and peak memory.

``--lines`` / ``--polygons``: the same job with one lines view (random straight segments, about 200 m) or one
polygons view (random squares, about 30 m) instead, ours only: lengths clipped to the regions and covered
shares have no one-call geopandas counterpart to time against.

The two count tables are compared tract by tract (points on a shared boundary go to one tract in ours,
to both in geopandas: the difference is reported). One JSON line per engine and size goes to
``bench-results/etl.jsonl``; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-results"
CATEGORIES = 8
CHUNK = 5_000_000


def tracts_path() -> Path:
    from cookie.config.project import shared_data_dir

    return shared_data_dir(REPO) / "nyc-census-tracts-2325" / "tracts_wgs84.geojson"


def write_geoparquet(path: Path, batches, geometry_type: str) -> Path:
    """GeoParquet (WKB geometries, a ``category`` column) from ``(geometries, category)`` array batches, written to
    a temporary name and renamed, so an interrupted run never leaves a half file that a later run would reuse."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    geo = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": [geometry_type], "crs": None}},
    }
    schema = pa.schema([("category", pa.string()), ("geometry", pa.binary())], metadata={"geo": json.dumps(geo)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as w:
        for geoms, cat in batches:
            wkb = shapely.to_wkb(geoms)
            w.write_table(pa.table({"category": pa.array(cat), "geometry": pa.array(wkb, pa.binary())}, schema))
    tmp.rename(path)
    return path


#: Synthetic lines and polygons: straight segments of this length and squares of this side (degrees; about 200 m
#: and 30 m in New York), at uniform random places over the regions' bounding box
LINE_DEGREES = 0.002
SQUARE_DEGREES = 0.0003


def make_shapes(kind: str, n: int, regions: Path, seed: int = 0) -> Path:
    """``n`` uniform random points, segments (``lines``) or squares (``polygons``) over the regions' bounding box
    as GeoParquet (written once, then reused)."""
    import geopandas as gpd
    import numpy as np
    import shapely

    path = OUT / "etl-data" / f"{kind}_{n}.parquet"
    if path.exists():
        return path
    minx, miny, maxx, maxy = gpd.read_file(regions).total_bounds
    rng = np.random.default_rng(seed)

    def batches():
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            x, y = rng.uniform(minx, maxx, k), rng.uniform(miny, maxy, k)
            cat = np.char.add("c", rng.integers(0, CATEGORIES, k).astype(str))
            if kind == "points":
                yield shapely.points(np.column_stack([x, y])), cat
            elif kind == "lines":
                a = rng.uniform(0, 2 * np.pi, k)
                end = np.column_stack([x + LINE_DEGREES * np.cos(a), y + LINE_DEGREES * np.sin(a)])
                yield shapely.linestrings(np.stack([np.column_stack([x, y]), end], axis=1)), cat
            else:
                yield shapely.box(x, y, x + SQUARE_DEGREES, y + SQUARE_DEGREES), cat

    geometry_type = {"points": "Point", "lines": "LineString", "polygons": "Polygon"}[kind]
    return write_geoparquet(path, batches(), geometry_type)


def make_points(n: int, regions: Path, seed: int = 0) -> Path:
    """``n`` uniform points over the regions' bounding box as GeoParquet (written once, then reused)."""
    return make_shapes("points", n, regions, seed)


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            rss[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    keep, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        for c, pp in parents.items():
            if pp == p and c not in keep:
                keep.add(c)
                frontier.append(c)
    return sum(rss.get(p, 0) for p in keep)


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak tree RSS (bytes) and stdout of ``cmd``; raises on a non-zero exit."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.2)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    out, err = proc.communicate()
    done.set()
    t.join()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")
    return wall, peak, out


def ours(n: int, points: Path, regions: Path, kind: str = "points") -> dict:
    import yaml

    work = OUT / "etl-data" / (f"run_{n}" if kind == "points" else f"run_{kind}_{n}")
    cfg = {
        "name": f"etl{n}",
        "description": "bench_etl: uniform points into the NYC census tracts",
        "output": {"warehouse": str(work / "warehouse")},
        "sources": {"points": {"kind": "vector", "path": str(points), "format": "geoparquet"}},
        "regions": {"kind": "file", "path": str(regions), "id_column": "BoroCT2020"},
        # no spatial context: the count per region is what geopandas' sjoin computes too
        "views": [{"name": "poi", "kind": kind, "source": "points", "category_column": "category", "context": []}],
        # one table at a time, so the view's seconds are its own: written concurrently (the default), its write
        # would share the cores with the regions table's (2,325 tract polygons, about 3 s), the job's total alike
        "spark": {"parallel_tables": 1},
    }
    # every run writes fresh tables, as a first run does: the figures do not depend on how many earlier runs the
    # tables' logs hold (an overwrite replays the last checkpoint and up to 9 commits after it)
    shutil.rmtree(work / "warehouse", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "etl.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    wall, peak, _ = run_measured([sys.executable, "-m", "cookie", "features", "--config", str(cfg_path)])
    from cookie.config import load_config
    from cookie.storage import delta as tables

    loaded = load_config(cfg_path)
    runs = tables.read_frame(loaded, "etl_runs").sort_values("finished_at")
    t = json.loads(runs["tables"].iloc[-1])
    counts = tables.read_frame(loaded, "view_poi").set_index("region_id")
    return {
        "engine": "cookie features",
        "kind": kind,
        "points": n,
        "regions": int(t["regions"]["rows"]),
        "job_s": round(wall, 1),
        "view_s": round(t["view_poi"]["seconds"], 1),
        "regions_s": round(t["regions"]["seconds"], 1),
        "peak_gb": round(peak / 2**30, 2),
        "cores": os.cpu_count(),
        "inside": int(counts["count_total"].sum()) if kind == "points" else None,
        "_counts": counts["count_total"] if kind == "points" else None,
    }


GEOPANDAS = """
import json, sys, time
t0 = time.time()
import geopandas as gpd
pts = gpd.read_parquet(sys.argv[1])
tracts = gpd.read_file(sys.argv[2])[["BoroCT2020", "geometry"]]
pts = pts.set_crs(tracts.crs, allow_override=True)
j = gpd.sjoin(pts, tracts, predicate="within", how="inner")
counts = j.groupby(["BoroCT2020", "category"]).size().unstack(fill_value=0)
total = counts.sum(axis=1)
print(json.dumps({"seconds": time.time() - t0, "inside": int(total.sum()), "total": total.to_dict()}))
"""


def geopandas(n: int, points: Path, regions: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    wall, peak, out = run_measured([sys.executable, "-c", GEOPANDAS, str(points), str(regions)], env)
    res = json.loads(out.strip().splitlines()[-1])
    return {
        "engine": "geopandas sjoin",
        "points": n,
        "regions": None,
        "job_s": round(wall, 1),
        "view_s": round(res["seconds"], 1),
        "regions_s": None,
        "peak_gb": round(peak / 2**30, 2),
        "cores": 1,
        "inside": res["inside"],
        "_total": res["total"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--points", type=int, nargs="*", default=[1_000_000, 10_000_000, 30_000_000], help="none: no points view"
    )
    ap.add_argument("--regions", type=Path, default=None, help="regions GeoJSON (default: the NYC tracts)")
    ap.add_argument("--skip-geopandas", action="store_true")
    ap.add_argument(
        "--lines", type=int, nargs="*", default=[], help="also a lines view over this many random segments (ours only)"
    )
    ap.add_argument(
        "--polygons", type=int, nargs="*", default=[], help="also a polygons view over this many squares (ours only)"
    )
    args = ap.parse_args(argv)
    regions = args.regions or tracts_path()
    if not regions.is_file():
        print(f"skip: {regions} not found (set COOKIE_SHARED_DATA)")
        return 0
    OUT.mkdir(exist_ok=True)
    rows = []
    for n in args.points:
        points = make_points(n, regions)
        a = ours(n, points, regions)
        rows.append(a)
        if not args.skip_geopandas:
            b = geopandas(n, points, regions)
            ours_counts = a["_counts"]
            theirs = {str(k): v for k, v in b["_total"].items()}
            diff = sum(abs(int(ours_counts.get(k, 0)) - int(v)) for k, v in theirs.items())
            diff += sum(int(v) for k, v in ours_counts.items() if k not in theirs)
            a["count_diff_vs_geopandas"] = b["count_diff_vs_geopandas"] = diff
            rows.append(b)
        with open(OUT / "etl.jsonl", "a") as f:
            for r in rows[-2:] if not args.skip_geopandas else rows[-1:]:
                f.write(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}) + "\n")
    for kind, sizes in (("lines", args.lines), ("polygons", args.polygons)):
        for n in sizes:
            rows.append(ours(n, make_shapes(kind, n, regions), regions, kind))
            with open(OUT / "etl.jsonl", "a") as f:
                f.write(json.dumps({k: v for k, v in rows[-1].items() if not k.startswith("_")}) + "\n")
    print(
        f"{'engine':<18}{'kind':<10}{'features':>12}{'job s':>9}{'view s':>9}{'regions s':>11}{'peak GB':>9}{'diff':>7}"
    )
    for r in rows:
        print(
            f"{r['engine']:<18}{r.get('kind', 'points'):<10}{r['points']:>12,}{r['job_s']:>9.1f}{r['view_s']:>9.1f}"
            f"{r['regions_s'] if r['regions_s'] is not None else '':>11}{r['peak_gb']:>9.2f}"
            f"{r.get('count_diff_vs_geopandas', ''):>7}"
        )
    print("diff: |our count - geopandas count| summed over tracts (boundary points count once in ours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
