"""`python -m mentator ...`: the same command line as the PEX entry point."""

import sys

from mentator.cli import main

if __name__ == "__main__":
    sys.exit(main())
