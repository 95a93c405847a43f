"""``python -m pipeline`` is the ``pipeline`` command."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
