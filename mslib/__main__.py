"""``python -m mslib ...`` and the ``mslib`` console script: see :mod:`mslib.cli`."""

from __future__ import annotations

import sys

from mslib.cli import main

if __name__ == "__main__":
    sys.exit(main())
