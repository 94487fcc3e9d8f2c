"""`python -m hyena_lite`: the command line."""

import sys

from hyena_lite.cli import main

sys.exit(main())
