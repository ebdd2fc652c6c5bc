"""`python -m mmpt` — same as the `mmpt` console script (and what `torchrun -m mmpt` runs)."""

from mmpt.cli import main

if __name__ == "__main__":
    main()
