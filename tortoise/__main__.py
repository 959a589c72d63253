"""`python -m tortoise`: headless generation (see tortoise/cli.py)."""

import sys

from tortoise.cli import main

sys.exit(main())
