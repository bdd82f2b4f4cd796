"""`python -m mambast ...` (also what `torchrun -m mambast train ...` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
