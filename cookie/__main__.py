"""``python -m cookie <verb> --config ...``: see :mod:`cookie.cli`."""

import sys

from cookie.cli import main

sys.exit(main())
