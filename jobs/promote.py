"""spark-submit entry point of `python -m cookie promote` (same arguments; see `python -m cookie promote --help`).

spark-submit --packages <see README> jobs/promote.py --config conf/helsinki.yaml
python jobs/promote.py --config conf/helsinki.yaml [--set key=value ...]
"""

import sys

from cookie.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("promote"))
