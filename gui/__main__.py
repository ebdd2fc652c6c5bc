"""`python -m gui [DATASET] [RUN]`."""

from gui.commands import main

main()
