"""spark-submit entry point of `python -m cookie train` (same arguments; see `python -m cookie train --help`).

spark-submit --packages <see README> jobs/train.py --config conf/helsinki.yaml
python jobs/train.py --config conf/helsinki.yaml [--set key=value ...]
"""

import sys
from pathlib import Path

# The repository root goes first on the path, so cookie/ is imported from this checkout also where the package is
# not installed: a Databricks job runs this file from the bundle's synced copy of the repository (installing the
# package there would pull PyPI pyspark over the runtime's); the file's path comes from argv where __file__ is unset.
sys.path.insert(0, str(Path(globals().get("__file__") or sys.argv[0]).resolve().parents[1]))

from cookie.cli import run_verb

if __name__ == "__main__":
    sys.exit(run_verb("train"))
