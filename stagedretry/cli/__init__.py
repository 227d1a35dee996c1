"""The ``stagedretry`` command line (click + rich): ``run``, ``demo``, ``plan``, ``caches``.

Needs the ``cli`` extra: ``pip install 'stagedretry[cli]'``.
"""

from ._app import main

__all__ = ["main"]
