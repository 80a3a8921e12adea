"""`python -m nat`: the same as the `nat` command."""

import sys

from nat.cli import main

sys.exit(main())
