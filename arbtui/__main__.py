"""``python -m arbtui``."""

from __future__ import annotations

import sys

from arbtui.cli import main

if __name__ == "__main__":
    sys.exit(main())
