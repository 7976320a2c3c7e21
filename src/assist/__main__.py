"""``python -m assist`` (what ``torchrun -m assist`` and ``assist train --nproc N`` start)."""

from assist.cli import main

main()
