"""``python -m carrot``: the command line (see :mod:`carrot.cli`)."""

import sys

from carrot.cli import main

if __name__ == "__main__":
    sys.exit(main())
