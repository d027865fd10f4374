"""spark-submit entry point of `python -m cookie lookup` (same arguments; see `python -m cookie lookup --help`).

spark-submit --packages <see README> jobs/lookup.py --config conf/helsinki.yaml
python jobs/lookup.py --config conf/helsinki.yaml [--set key=value ...]
"""

import sys

from cookie.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("lookup"))
