"""What Vertex AI does differently from the Developer API: paths, resource names, wordings.

The emulator serves one API at a time (:class:`Api`).  In Vertex mode every
path carries ``projects/{project}/locations/{location}/``, models are
``publishers/google/models/{model}``, caches are named in full with the
project's number and a numeric id, requests authenticate with an OAuth 2
bearer token instead of an API key, and a dead cache is worded Vertex's way.
The wordings, with their sources, are in ``docs/reference/gemini.md``.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Final

from ._wire import ApiError

__all__ = [
    "PROJECT_NUMBER",
    "TOKEN_PATH",
    "Api",
    "cache_gone_generate",
    "cache_gone_manage",
    "cache_resource",
    "cache_too_small",
    "credentials_info",
    "missing_credentials",
    "model_resource",
    "publisher_model_not_found",
    "split_path",
]

PROJECT_NUMBER: Final = "123456789012"
"""The project number the emulator's Vertex resource names carry, whatever project id
the request names (Vertex names resources by the project's number)."""

TOKEN_PATH: Final = "/token"  # noqa: S105 - a path, not a password
"""Where the emulator answers OAuth 2 token requests (``token_uri`` of its credentials)."""

VERSIONS: Final = frozenset({"v1", "v1beta1"})
"""The API versions Vertex AI serves ``generateContent`` and ``cachedContents`` under."""

_PLACE: Final = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/(?P<rest>.+)$"
)
_PUBLISHER_MODEL: Final = re.compile(r"^publishers/google/(?P<model>models/[^/:]+)(?P<verb>:.*)?$")

MSG_NO_CREDENTIALS: Final = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MSG_API_KEY_REFUSED: Final = (
    "API keys are not supported by this API. Expected OAuth2 access token or other "
    "authentication credentials that assert a principal. See "
    "https://cloud.google.com/docs/authentication"
)


class Api(enum.Enum):
    """Which Google API the emulator speaks."""

    GEMINI = "gemini"
    """The Gemini Developer API (``generativelanguage.googleapis.com``): API keys,
    ``models/{model}``, ``cachedContents/{id}``."""
    VERTEX = "vertex"
    """Vertex AI (``{location}-aiplatform.googleapis.com``): OAuth 2 bearer tokens,
    ``projects/{p}/locations/{l}/publishers/google/models/{model}``,
    ``projects/{number}/locations/{l}/cachedContents/{numeric id}``."""


def credentials_info(base_url: str) -> dict[str, str]:
    """Google service-account credentials whose tokens the emulator at *base_url* issues.

    In a JSON file named by ``GOOGLE_APPLICATION_CREDENTIALS`` they are Application
    Default Credentials: ``google.auth.default()`` loads them and the SDK exchanges
    a JWT signed with their key for a bearer token at the emulator's ``/token``
    (their ``token_uri``), so no request leaves loopback.  The key is made for the
    emulator and opens nothing.  (An ``authorized_user`` file will not do:
    google-auth sends its refresh to Google's own endpoint whatever it says.)
    """
    return {
        "type": "service_account",
        "project_id": "emulator-project",
        "private_key_id": "emulator-key-1",
        "private_key": _signing_key(),
        "client_email": "stagedretry-emulator@emulator-project.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": base_url.rstrip("/") + TOKEN_PATH,
    }


@functools.cache
def _signing_key() -> str:
    """An RSA key in PEM, made once per process (making one takes a good fraction of a second)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def split_path(rest: str) -> tuple[str, str, str] | None:
    """``(project, location, rest)`` of a Vertex path after its version, ``rest`` in the
    Developer API's form.

    ``projects/p/locations/l/publishers/google/models/m:generateContent`` gives
    ``("p", "l", "models/m:generateContent")``; ``projects/p/locations/l/cachedContents/1``
    gives ``("p", "l", "cachedContents/1")``.  ``None`` for a path Vertex does not serve here.
    """
    match = _PLACE.match(rest)
    if match is None:
        return None
    place = match.group("project"), match.group("location")
    inner = match.group("rest")
    if inner.startswith("cachedContents"):
        return (*place, inner)
    model = _PUBLISHER_MODEL.match(inner)
    if model is None:
        return None
    return (*place, model.group("model") + (model.group("verb") or ""))


def developer_model(name: str) -> str:
    """``models/m`` for a Vertex model name in any of its forms (full, publisher, bare)."""
    match = _PLACE.match(name)
    inner = match.group("rest") if match else name
    publisher = _PUBLISHER_MODEL.match(inner)
    if publisher is not None:
        return publisher.group("model")
    return inner if inner.startswith("models/") else f"models/{inner}"


def model_resource(model: str, location: str) -> str:
    """The full Vertex name of ``models/m``: ``projects/N/locations/L/publishers/google/models/m``
    (N the project's number)."""
    return f"projects/{PROJECT_NUMBER}/locations/{location}/publishers/google/{model}"


def cache_resource(cache_id: str, location: str) -> str:
    """The full Vertex name of a cache: ``projects/N/locations/L/cachedContents/<id>``."""
    return f"projects/{PROJECT_NUMBER}/locations/{location}/cachedContents/{cache_id}"


def cache_gone_generate(cache_id: str) -> ApiError:
    """Vertex's 404 for a ``generateContent`` naming a cache that no longer exists."""
    return ApiError(404, f"Not found: cached content metadata for {cache_id}.")


def cache_gone_manage(cache_id: str) -> ApiError:
    """Vertex's 404 for a get, update or delete of a cache that no longer exists."""
    return ApiError(404, f"Cached content {cache_id} is not found.")


def cache_too_small(total: int, minimum: int) -> ApiError:
    """Vertex's 400 for a cache below the model's minimum size."""
    return ApiError(
        400,
        f"The cached content is of {total} tokens. "
        f"The minimum token count to start caching is {minimum}.",
    )


MSG_RESOURCE_EXHAUSTED: Final = (
    "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."
)
"""Vertex's 429 when requests outrun the shared capacity (Dynamic Shared Quota): no
``QuotaFailure``, no ``RetryInfo`` (continuedev/continue#8967, google-gemini/gemini-cli#14811
and #15498, googleapis/python-genai#2001)."""


def resource_exhausted() -> ApiError:
    """Vertex's 429 for a request over a per-minute quota: the bare message, no details."""
    return ApiError(429, MSG_RESOURCE_EXHAUSTED)


def publisher_model_not_found(model: str, project: str, location: str) -> ApiError:
    """Vertex's 404 for a model it does not serve (``models/m``), naming the project asked."""
    return ApiError(
        404,
        f"Publisher Model `projects/{project}/locations/{location}/publishers/google/{model}` "
        "was not found or your project does not have access to it. Please ensure you are "
        "using a valid model version. For more information, see: "
        "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions",
    )


def missing_credentials(*, api_key_sent: bool) -> ApiError:
    """Vertex's 401 for a request without a bearer token (an API key alone is refused)."""
    reason = "CREDENTIALS_MISSING"
    message = MSG_API_KEY_REFUSED if api_key_sent else MSG_NO_CREDENTIALS
    return ApiError(
        401,
        message,
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "aiplatform.googleapis.com"},
            }
        ],
    )
