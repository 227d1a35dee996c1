"""An SDK client set up the way the engine needs it: SDK retries off, API version named."""

from __future__ import annotations

from google import genai
from google.genai import types


def connect(
    api_key: str,
    *,
    api_version: str = "v1beta",
    base_url: str | None = None,
    timeout_ms: int | None = None,
) -> genai.Client:
    """A ``google.genai.Client`` whose own HTTP retries are off.

    The engine retries, and counts every request against the item's budget;
    one attempt also disables the aiohttp transport's hidden reconnect.  The
    API version is named because SDK 3.x otherwise defaults to ``v1``.
    """
    options = types.HttpOptions(
        api_version=api_version,
        base_url=base_url,
        timeout=timeout_ms,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=api_key, http_options=options)


async def disconnect(client: genai.Client) -> None:
    """Close both the async and the sync transports of *client*."""
    await client.aio.aclose()
    client.close()
