"""`python -m nlbench` runs the command line."""

import sys

from nlbench.cli import main

sys.exit(main())
