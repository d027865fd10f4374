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

    from cookie.cli import config_or_exit, fail, session_or_exit
    from cookie.etl import build_features
    from cookie.sources.vector import InputError

    cfg = config_or_exit(args.config)
    spark = session_or_exit(cfg, "features", args.master)
    try:
        report = build_features(spark, cfg, args.only)
    except (InputError, FileNotFoundError, KeyError, ValueError) as exc:
        fail(exc, 1)
    print(report.as_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
