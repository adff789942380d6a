"""`python -m facestudio ...`: the command-line front."""

import sys

from facestudio.cli import main

if __name__ == "__main__":
    sys.exit(main())
