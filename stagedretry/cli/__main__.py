"""``python -m stagedretry.cli``: the same as the ``stagedretry`` command."""

from ._entry import main

main()
