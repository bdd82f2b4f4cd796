"""`python -m mambast ...` (also what `torchrun -m mambast train ...` runs)."""

from .cli import main
from .torchrun import exit_process

if __name__ == "__main__":
    exit_process(main())  # sys.exit, or under torchrun os._exit after leaving the group (mambast/torchrun.py)
