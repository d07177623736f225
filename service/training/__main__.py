"""`python -m service.training …`: the same command as `redline train …`."""

from __future__ import annotations

import sys

from service.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
