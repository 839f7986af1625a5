"""``python -m misuse`` runs the command line."""

from misuse.cli import main

main()
