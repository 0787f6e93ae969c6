"""``python -m gridpatrol`` runs the CLI (used to start worker processes with the same interpreter)."""

from gridpatrol.cli import main

main()
