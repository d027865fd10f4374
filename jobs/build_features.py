"""spark-submit entry point of `python -m cookie features` (same arguments; see `python -m cookie features --help`).

spark-submit --packages <see README> jobs/build_features.py --config conf/helsinki.yaml
python jobs/build_features.py --config conf/helsinki.yaml [--set key=value ...]
"""

import sys

from cookie.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("features"))
