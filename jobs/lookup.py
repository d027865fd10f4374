"""Print the embeddings of regions or of lat/lon points for a registered model version.

    python jobs/lookup.py --config conf/helsinki.yaml --alias challenger --region 8a1126d06cb7fff
    python jobs/lookup.py --config conf/helsinki.yaml --version 3 --lat 60.17 --lon 24.94 [--full]
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config in conf/")
    parser.add_argument("--model-name", help="registered model (default: train.registered_model_name or cookie_<name>)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--alias", help="registry alias (default: champion)")
    which.add_argument("--version", type=int, help="registered version number")
    parser.add_argument("--region", action="append", default=[], help="region id (repeatable)")
    parser.add_argument("--lat", type=float, action="append", default=[], help="latitude (repeatable, with --lon)")
    parser.add_argument("--lon", type=float, action="append", default=[], help="longitude (repeatable, with --lat)")
    parser.add_argument("--full", action="store_true", help="print whole vectors, not the first numbers")
    parser.add_argument("--master", help="Spark master (default: local[*])")
    args = parser.parse_args(argv)
    if len(args.lat) != len(args.lon):
        parser.error("give as many --lat as --lon")
    if not args.region and not args.lat:
        parser.error("give --region and/or --lat/--lon")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from cookie.cli import config_or_exit, session_or_exit

    cfg = config_or_exit(args.config)
    spark = session_or_exit(cfg, "lookup", args.master)
    from cookie.lookup import format_vector, lookup_points, lookup_regions

    missing = 0
    try:
        if args.region:
            for _, r in lookup_regions(spark, cfg, args.region, args.model_name, args.alias, args.version).iterrows():
                missing += r["embedding"] is None
                print(f"region {r['region_id']}  {r['model_name']} v{r['model_version']}  "
                      f"{format_vector(r['embedding'], args.full)}")
        if args.lat:
            pts = list(zip(args.lat, args.lon))
            for _, r in lookup_points(spark, cfg, pts, args.model_name, args.alias, args.version).iterrows():
                missing += r["embedding"] is None
                region = r["region_id"] if r["region_id"] is not None else "(outside every region)"
                print(f"point ({r['lat']}, {r['lon']}) -> region {region}  {r['model_name']} v{r['model_version']}  "
                      f"{format_vector(r['embedding'], args.full)}")
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
