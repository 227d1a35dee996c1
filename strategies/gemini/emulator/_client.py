"""A ready-made SDK client pointed at an emulator, for tests and the ``demo`` command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from google import genai

Transport = Literal["aiohttp", "httpx2"]


def make_client(
    base_url: str,
    *,
    transport: Transport = "aiohttp",
    api_version: str = "v1beta",
    api_key: str = "emulator-key",
    timeout_ms: int | None = None,
) -> genai.Client:
    """Build a ``google.genai.Client`` for ``base_url`` with SDK retries off.

    ``transport`` picks what ``client.aio`` uses: "aiohttp" (the SDK's choice whenever
    aiohttp is importable) or "httpx2", forced by handing the SDK an explicit
    ``httpx2.AsyncHTTPTransport`` (the SDK's ``_use_aiohttp`` is false once
    ``async_client_args['transport']`` is set). The sync client always uses httpx2.
    ``retry_options`` with one attempt also disables the aiohttp path's hidden reconnect.
    A caller-supplied transport turns off the SDK's one-pool-per-event-loop mode, so an
    "httpx2" client must be used from a single event loop.
    """
    from google import genai
    from google.genai import types

    if transport not in ("aiohttp", "httpx2"):
        raise ValueError(f"transport must be 'aiohttp' or 'httpx2', got {transport!r}")
    async_args = None
    if transport == "httpx2":
        import httpx2

        async_args = {"transport": httpx2.AsyncHTTPTransport()}
    options = types.HttpOptions(
        base_url=base_url,
        api_version=api_version,
        timeout=timeout_ms,
        retry_options=types.HttpRetryOptions(attempts=1),
        async_client_args=async_args,
    )
    return genai.Client(api_key=api_key, http_options=options)


def make_vertex_client(
    base_url: str,
    *,
    project: str = "emulator-project",
    location: str = "us-central1",
    api_version: str = "v1beta1",
    timeout_ms: int | None = None,
) -> genai.Client:
    """Build a Vertex AI mode ``google.genai.Client`` for an emulator started with
    ``api=Api.VERTEX``, SDK retries off.

    Its credentials are the emulator's own (:func:`credentials_info`): the SDK
    refreshes them at ``base_url``'s ``/token``, so nothing leaves loopback.
    """
    from google import genai
    from google.genai import types
    from google.oauth2 import service_account

    from ._vertex import credentials_info

    options = types.HttpOptions(
        base_url=base_url,
        api_version=api_version,
        timeout=timeout_ms,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        credentials_info(base_url), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    return genai.Client(
        vertexai=True,
        project=project,
        location=location,
        credentials=credentials,
        http_options=options,
    )
