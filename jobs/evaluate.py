"""spark-submit entry point of `python -m cookie evaluate` (same arguments; see `python -m cookie evaluate --help`).

spark-submit --packages <see README> jobs/evaluate.py --config conf/helsinki.yaml
python jobs/evaluate.py --config conf/helsinki.yaml [--set key=value ...]
"""

import sys

from cookie.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("evaluate"))
