"""Build per-region Delta feature tables from a config.

    spark-submit --packages <see README> jobs/build_features.py --config conf/helsinki.yaml
    python jobs/build_features.py --config conf/helsinki.yaml      (resolves the jars itself)
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config in conf/")
    parser.add_argument("--only", nargs="*", help="build only these views/labels (regions are always built)")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from cookie.config import ConfigError, load_config
    from cookie.etl import build_features
    from cookie.sources.vector import InputError
    from cookie.spark import StackNotLoaded, build_session, settings_for

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        spark = build_session(settings_for(cfg, "features", args.master))
    except StackNotLoaded as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    try:
        report = build_features(spark, cfg, args.only)
    except (InputError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.as_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
