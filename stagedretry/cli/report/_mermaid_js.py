"""The vendored Mermaid renderer: one pinned release of mermaid's ``dist/mermaid.min.js``.

No CDN is reachable from a report opened offline, so the report embeds the
renderer.  The file is kept gzip-compressed (1.6 MB instead of 5.5 MB; the page
inflates it with the browser's own ``DecompressionStream``), next to mermaid's
MIT licence; ``assets/VENDORED.md`` says where it came from and how to update it.
The docs site serves the same file (``docs/hooks.py``).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
from importlib import resources
from typing import Final

MERMAID_VERSION: Final = "12.3.0"
"""The mermaid release vendored (npm package ``mermaid``)."""
MERMAID_SHA256: Final = "336df803d87a38b70a01e736e666c8f7601d2ce42f5e47c8fafe5d721074b9a3"
"""SHA-256 of ``dist/mermaid.min.js`` exactly as that release publishes it."""
_ASSET: Final = "mermaid.min.js.gz"


def mermaid_gzip() -> bytes:
    """The gzip-compressed ``mermaid.min.js`` shipped in the package."""
    return resources.files(__package__).joinpath("assets", _ASSET).read_bytes()


def mermaid_js() -> bytes:
    """``mermaid.min.js`` itself; ``RuntimeError`` if the shipped file is not the pinned one."""
    data = gzip.decompress(mermaid_gzip())
    if hashlib.sha256(data).hexdigest() != MERMAID_SHA256:
        raise RuntimeError(f"the vendored mermaid.min.js is not mermaid {MERMAID_VERSION}'s")
    return data


@functools.cache
def mermaid_gzip_base64() -> str:
    """The compressed renderer as base64 text, as the page embeds it."""
    return base64.b64encode(mermaid_gzip()).decode("ascii")


@functools.cache
def mermaid_script_hash() -> str:
    """The CSP source (``'sha256-...'``) of the renderer run as an inline script."""
    digest = base64.b64encode(bytes.fromhex(MERMAID_SHA256)).decode("ascii")
    return f"'sha256-{digest}'"
