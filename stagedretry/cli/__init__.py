"""The ``stagedretry`` command line (click + rich): ``run``, ``demo``, ``plan``, ``caches``.

Needs the ``cli`` extra: ``pip install 'stagedretry[cli]'``.  ``main`` (the click
command group) is loaded when first asked for, so that the process entry
(``_entry``) can take Ctrl-C over before the command's imports.
"""

import typing as _typing

if _typing.TYPE_CHECKING:
    from ._app import main

__all__ = ["main"]


def __getattr__(name: str) -> _typing.Any:
    if name != "main":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._app import main

    return main
