"""Gemini on Vertex AI: the ``vertex`` backend's spec, its section, and a client for it.

The strategy and the shared context cache are :mod:`strategies.gemini`'s own; only
the client differs (``genai.Client(vertexai=True, ...)`` with Google Cloud
credentials, never an API key).  Importing this module imports neither
``google.genai`` nor ``google.auth``: :func:`connect_vertex` and
:meth:`BACKEND.build` do.
"""

from ._vertex_backend import (
    BACKEND,
    VERTEX_API_VERSIONS,
    VertexSection,
    connect_vertex,
    find_credentials,
    section_client,
)

__all__ = [
    "BACKEND",
    "VERTEX_API_VERSIONS",
    "VertexSection",
    "connect_vertex",
    "find_credentials",
    "section_client",
]
