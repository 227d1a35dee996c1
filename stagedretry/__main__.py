"""``python -m stagedretry``: the same as the ``stagedretry`` command (needs the ``cli`` extra)."""

from .cli import main

main()
