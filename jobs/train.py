"""spark-submit entry point of `python -m cookie train` (same arguments; see `python -m cookie train --help`).

spark-submit --packages <see README> jobs/train.py --config conf/helsinki.yaml
python jobs/train.py --config conf/helsinki.yaml [--set key=value ...]
"""

import sys

from cookie.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("train"))
