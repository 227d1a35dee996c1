"""``python -m stagedretry.cli``: the same as the ``stagedretry`` command."""

from ._app import main

main()
