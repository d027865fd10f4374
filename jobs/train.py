"""Train the config's region model on its Delta view tables (TorchDistributor + DDP), log to MLflow,
register the model (alias challenger) and write its embeddings table.

    python jobs/train.py --config conf/helsinki.yaml [--num-processes 2] [--stop-after-epochs 5] [--resume]
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config in conf/")
    parser.add_argument("--resume", action="store_true", help="continue the newest run of this config")
    parser.add_argument("--num-processes", type=int, help="ranks (default: train.num_processes)")
    parser.add_argument("--stop-after-epochs", type=int, help="stop (resumably) after this many epochs in total")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)

    from cookie.cli import config_or_exit, session_or_exit

    cfg = config_or_exit(args.config, with_model=True)
    spark = session_or_exit(cfg, "train", args.master)
    from cookie.training.job import train

    try:
        result = train(spark, cfg, resume=args.resume, num_processes=args.num_processes,
                       stop_after_epochs=args.stop_after_epochs)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    if result.status == "STOPPED":
        print(f"stopped after epoch {result.global_epoch}; continue with --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
