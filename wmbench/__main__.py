"""``python -m wmbench``: the command line."""

import sys

from wmbench.cli import main

sys.exit(main())
