"""The ``vertex`` backend spec: Gemini on Vertex AI, with Google Cloud credentials.

The same strategy and shared context cache as the ``gemini`` backend, through a
``genai.Client(vertexai=True, project=..., location=...)``.  Vertex AI takes
OAuth 2 access tokens, never an API key: the credentials are the Application
Default Credentials, found as the SDK itself finds them (``google.auth.default``:
``GOOGLE_APPLICATION_CREDENTIALS``, then ``gcloud auth application-default
login``'s file, then the metadata server of a Google Cloud machine).
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any, Final

import attrs

from stagedretry import PlanError, setting

from ..backend import BackendError, BackendSpec, Built, JobInputs, close_all, http_url_problem
from ..quota import Quota
from ._backend import build_on_client, check_shape, client_closer
from ._params import GeminiParams

if TYPE_CHECKING:
    from google import genai

# google.genai and google.auth are imported by the functions that build a client: reading
# and checking a pipeline needs only the section and params.

__all__ = [
    "BACKEND",
    "VERTEX_API_VERSIONS",
    "VertexSection",
    "connect_vertex",
    "find_credentials",
    "section_client",
]

VERTEX_API_VERSIONS: Final = ("v1beta1", "v1")
"""The API versions Vertex AI serves ``generateContent`` and ``cachedContents`` under;
``v1beta1`` is the SDK's own default for Vertex AI (and the version its tests use)."""

CLOUD_PLATFORM: Final = "https://www.googleapis.com/auth/cloud-platform"
"""The OAuth 2 scope the SDK asks Application Default Credentials for."""

PROJECT_ENV: Final = "GOOGLE_CLOUD_PROJECT"
"""Where the project comes from when the pipeline names none (as for the SDK and gcloud)."""

CREDENTIALS_TIMEOUT: Final = 60.0
"""Seconds to wait for Application Default Credentials to be found (on a Google Cloud
machine that means asking its metadata server)."""

_PROJECT: Final = re.compile(r"^(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$")
_LOCATION: Final = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$")


@attrs.frozen(repr=False)
class VertexSection:
    """The vertex backend's part of ``[backend]``: which project and location, how, where.

    Raises :class:`~stagedretry.PlanError` for a project or location that is not one and
    a ``base_url`` that is not an ``http(s)://`` URL; an ``api_key`` is refused when the
    pipeline is checked or run.
    """

    project: str | None = setting(None)
    """The Google Cloud project: its id (``my-project``) or its number; ``None``: the
    ``GOOGLE_CLOUD_PROJECT`` environment variable, else the credentials' own project."""
    location: str = setting("us-central1")
    """The Vertex AI location requests and caches live in: ``us-central1``, ``europe-west4``,
    ``global``."""
    api_version: str = setting("v1beta1", choices=VERTEX_API_VERSIONS)
    """The Vertex AI API version the SDK calls; not part of the fingerprint."""
    base_url: str | None = setting(None)
    """Where requests go: an ``http(s)://`` URL (a proxy, an emulator); ``None``: Google's
    endpoint for the location.  Not part of the fingerprint."""
    quota: Quota = setting(factory=Quota)
    """The ``[backend.quota]`` table: the limits each request is admitted under before it
    is sent (see :class:`~strategies.quota.Quota`); empty: none.  Not part of the
    fingerprint."""
    api_key: str | None = setting(None)
    """Refused when the pipeline is checked or run: Vertex AI is reached with Google Cloud
    credentials (Application Default Credentials), never with an API key."""

    def __attrs_post_init__(self) -> None:
        if self.project is not None and not _PROJECT.match(self.project):
            raise PlanError(
                "project",
                f"expected a Google Cloud project id (6 to 30 lower-case letters, digits and "
                f"hyphens, starting with a letter) or a project number, got {self.project!r}",
            )
        if not _LOCATION.match(self.location):
            raise PlanError(
                "location",
                f"expected a Vertex AI location such as 'us-central1' or 'global', "
                f"got {self.location!r}",
            )
        problem = http_url_problem(self.base_url) if self.base_url is not None else None
        if problem is not None:
            raise PlanError("base_url", problem)

    def __repr__(self) -> str:
        # Written by hand so that a key someone put in the file never shows.
        key = None if self.api_key is None else "[redacted]"
        return (
            f"VertexSection(project={self.project!r}, location={self.location!r}, "
            f"api_version={self.api_version!r}, base_url={self.base_url!r}, quota={self.quota!r}, "
            f"api_key={key!r})"
        )


def connect_vertex(
    project: str,
    location: str,
    *,
    credentials: Any = None,
    api_version: str = "v1beta1",
    base_url: str | None = None,
    timeout_ms: int | None = None,
) -> genai.Client:
    """A Vertex AI mode ``google.genai.Client`` whose own HTTP retries are off.

    *credentials* are ``google.auth`` credentials (``None``: the SDK finds the
    Application Default Credentials at the first request).  The engine retries and
    counts every request, so the SDK makes one attempt; the API version is named so a
    change of the SDK's default does not change what is called.  No API key is sent,
    even when ``GOOGLE_API_KEY`` is set.
    """
    from google import genai
    from google.genai import types

    options = types.HttpOptions(
        api_version=api_version,
        base_url=base_url,
        timeout=timeout_ms,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(
        vertexai=True,
        project=project,
        location=location,
        credentials=credentials,
        http_options=options,
    )


def find_credentials() -> tuple[Any, str | None]:
    """The Application Default Credentials, scoped for Vertex AI, as the SDK finds them,
    and their project (``None`` when they name none).

    Raises :class:`~strategies.backend.BackendError` (one sentence, what to do) when
    there are none or the file named by ``GOOGLE_APPLICATION_CREDENTIALS`` cannot be
    used.  Sends no request unless it must ask a Google Cloud machine's metadata server.
    """
    import google.auth
    from google.auth import exceptions

    try:
        credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM])
    except exceptions.DefaultCredentialsError as exc:
        from ._errors import redact

        detail = redact(" ".join(str(exc).split()))[:200]
        raise BackendError(
            "the vertex backend found no usable Google Cloud credentials (Application Default "
            "Credentials): run `gcloud auth application-default login`, or set "
            f"GOOGLE_APPLICATION_CREDENTIALS to a credentials file ({detail})"
        ) from None
    return credentials, project or None


def _project(section: VertexSection, found: str | None) -> str:
    """The pipeline's project, else ``GOOGLE_CLOUD_PROJECT``'s, else the credentials'."""
    project = section.project or os.environ.get(PROJECT_ENV, "").strip() or found
    if not project:
        raise BackendError(
            "the vertex backend needs a Google Cloud project: set backend.project in the "
            f"pipeline (or the {PROJECT_ENV} environment variable)"
        )
    return project


def section_client(
    section: VertexSection, *, base_url: str | None = None, timeout_ms: int | None = None
) -> genai.Client:
    """A client for *section*'s project and location with the Application Default
    Credentials (*base_url* overrides the section's).  Raises
    :class:`~strategies.backend.BackendError` as :func:`find_credentials` does, or when no
    project is named anywhere."""
    credentials, found = find_credentials()
    return connect_vertex(
        _project(section, found),
        section.location,
        credentials=credentials,
        api_version=section.api_version,
        base_url=base_url or section.base_url,
        timeout_ms=timeout_ms,
    )


class VertexBackend:
    """The ``vertex`` backend: Gemini on Vertex AI with Application Default Credentials."""

    name: Final = "vertex"
    section_type: Final = VertexSection
    params_type: Final = GeminiParams
    # Where requests go and which version is called decide no answer.
    neutral: Final = frozenset({"api_version", "base_url", "quota"})
    needs_api_key: Final = False

    def check(self, section: VertexSection, job: JobInputs) -> None:
        if section.api_key is not None:
            # Never echo the value: it is somebody's key.
            raise PlanError(
                "backend.api_key",
                "the vertex backend never sends an API key: Vertex AI is reached with Google "
                "Cloud credentials (Application Default Credentials); remove the key and run "
                "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS",
            )
        check_shape(self.name, job)

    async def build(self, section: VertexSection, job: JobInputs) -> Built:
        self.check(section, job)
        try:
            credentials, found_project = await asyncio.wait_for(
                asyncio.to_thread(find_credentials), CREDENTIALS_TIMEOUT
            )
        except TimeoutError:
            raise BackendError(
                f"the vertex backend found no Google Cloud credentials within "
                f"{CREDENTIALS_TIMEOUT:g} s: set GOOGLE_APPLICATION_CREDENTIALS to a "
                "credentials file"
            ) from None
        project = _project(section, found_project)
        client = connect_vertex(
            project,
            section.location,
            credentials=credentials,
            api_version=section.api_version,
            base_url=section.base_url,
        )
        closers = (client_closer(client),)
        try:
            built = build_on_client(
                client,
                job,
                label=f"vertex {job.model} ({project}, {section.location})",
                quota=section.quota,
            )
        except BaseException:
            await close_all(closers)
            raise
        return attrs.evolve(built, closers=closers)

    def __repr__(self) -> str:
        return "VertexBackend()"


BACKEND: Final[BackendSpec[VertexSection]] = VertexBackend()
"""The vertex backend's spec, for the command-line app's registry."""
