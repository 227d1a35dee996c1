"""The engine's default rules on the real exceptions of real HTTP stacks (issue 9).

Every error here is built by the library that raises it in the wild (httpx and
its fork httpx2, aiohttp, requests, the OS), not imitated, and the named
examples of the issue also go through a runner with ``strategies.callable``.
"""

from __future__ import annotations

import errno
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

import stagedretry as sr
from stagedretry import OutcomeKind as K
from stagedretry._http import retry_after
from stagedretry._outcomes import classify, default_outcome
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable

URL_TEXT = "https://llm.example/v1/generate"
GOOD = '{"title": "Dune", "year": 1965}'

# The same tests run over httpx and over httpx2, its drop-in fork that google-genai uses.
STACKS = [pytest.param(httpx, id="httpx"), pytest.param(httpx2, id="httpx2")]


def status_error(lib: ModuleType, status: int, headers: dict[str, str] | None = None) -> Any:
    request = lib.Request("POST", URL_TEXT)
    response = lib.Response(status, headers=headers, request=request)
    return lib.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def aiohttp_response_error(status: int, headers: dict[str, str] | None = None) -> Any:
    info = aiohttp.RequestInfo(URL(URL_TEXT), "POST", CIMultiDictProxy(CIMultiDict()))
    return aiohttp.ClientResponseError(
        info, (), status=status, message="", headers=CIMultiDict(headers or {})
    )


def requests_status_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} error", response=response)


class TestHttpxTransport:
    @pytest.mark.parametrize("lib", STACKS)
    @pytest.mark.parametrize(
        "make",
        [
            lambda lib, r: lib.ConnectError("connection refused", request=r),
            lambda lib, r: lib.ReadTimeout("timed out", request=r),
            lambda lib, r: lib.ConnectTimeout("timed out", request=r),
            lambda lib, r: lib.RemoteProtocolError("peer closed connection", request=r),
            lambda lib, r: lib.ReadError("reset by peer", request=r),
            lambda lib, r: lib.WriteError("broken pipe", request=r),
            lambda lib, r: lib.PoolTimeout("no connection", request=r),
            lambda lib, r: lib.ProxyError("proxy down", request=r),
            lambda lib, r: lib.DecodingError("bad gzip", request=r),
        ],
    )
    def test_transport_errors_are_transient(
        self, lib: ModuleType, make: Callable[[ModuleType, Any], BaseException]
    ) -> None:
        exc = make(lib, lib.Request("POST", URL_TEXT))
        assert default_outcome(exc).kind is K.TRANSIENT

    @pytest.mark.parametrize("lib", STACKS)
    def test_a_request_the_client_cannot_send_is_fatal(self, lib: ModuleType) -> None:
        request = lib.Request("POST", URL_TEXT)
        assert default_outcome(lib.UnsupportedProtocol("ftp://")).kind is K.FATAL
        assert default_outcome(lib.LocalProtocolError("bad header", request=request)).kind is (
            K.FATAL
        )


class TestHttpxStatus:
    @pytest.mark.parametrize("lib", STACKS)
    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            (408, K.TRANSIENT),
            (500, K.TRANSIENT),
            (502, K.TRANSIENT),
            (503, K.TRANSIENT),
            (504, K.TRANSIENT),
            (529, K.TRANSIENT),  # Anthropic's "overloaded"
            (429, K.RATE_LIMITED),
            (400, K.FATAL),
            (401, K.STOP_RUN),
            (403, K.FATAL),
            (404, K.FATAL),
            (422, K.FATAL),
            (501, K.FATAL),
        ],
    )
    def test_a_status_maps_as_the_outcome_table_says(
        self, lib: ModuleType, status: int, kind: K
    ) -> None:
        assert default_outcome(status_error(lib, status)).kind is kind

    @pytest.mark.parametrize("lib", STACKS)
    def test_a_429_carries_retry_after_in_seconds(self, lib: ModuleType) -> None:
        outcome = default_outcome(status_error(lib, 429, {"Retry-After": "7"}))
        assert outcome.kind is K.RATE_LIMITED
        assert outcome.retry_after == 7.0

    @pytest.mark.parametrize("lib", STACKS)
    def test_a_429_without_advice_leaves_the_wait_to_the_backoff(self, lib: ModuleType) -> None:
        outcome = default_outcome(status_error(lib, 429))
        assert outcome.kind is K.RATE_LIMITED
        assert outcome.retry_after is None

    @pytest.mark.parametrize("lib", STACKS)
    def test_a_503_carries_its_retry_after_too(self, lib: ModuleType) -> None:
        outcome = default_outcome(status_error(lib, 503, {"retry-after": "12"}))
        assert outcome.kind is K.TRANSIENT
        assert outcome.retry_after == 12.0

    def test_retry_after_as_an_http_date_is_measured_by_the_servers_own_clock(self) -> None:
        exc = status_error(
            httpx,
            429,
            {
                "Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT",
                "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
            },
        )
        # The local clock is far off; the response's Date header is what counts.
        assert retry_after(exc, now=lambda: 0.0) == 30.0

    def test_retry_after_as_an_http_date_without_a_date_header_uses_now(self) -> None:
        exc = status_error(httpx, 429, {"Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT"})
        at = 1_792_567_700.0  # 07:28:20 that day
        assert retry_after(exc, now=lambda: at) == 10.0
        assert retry_after(exc, now=lambda: at + 3600) == 0.0  # a date in the past: no wait

    def test_retry_after_ms_is_read_first(self) -> None:
        exc = status_error(httpx, 429, {"retry-after-ms": "1500", "Retry-After": "9"})
        assert retry_after(exc) == 1.5

    def test_a_garbled_retry_after_is_no_advice(self) -> None:
        assert retry_after(status_error(httpx, 429, {"Retry-After": "soon"})) is None


class TestAiohttp:
    @pytest.mark.parametrize(
        "exc",
        [
            aiohttp.ServerDisconnectedError(),
            aiohttp.ClientPayloadError("Response payload is not completed"),
            aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
            aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
            aiohttp.ClientConnectionResetError("Cannot write to closing transport"),
        ],
        ids=type,
    )
    def test_transport_errors_are_transient(self, exc: BaseException) -> None:
        assert default_outcome(exc).kind is K.TRANSIENT

    def test_a_bad_url_is_fatal(self) -> None:
        assert default_outcome(aiohttp.InvalidURL("not a url")).kind is K.FATAL

    @pytest.mark.parametrize(
        ("status", "kind"),
        [(503, K.TRANSIENT), (500, K.TRANSIENT), (429, K.RATE_LIMITED), (401, K.STOP_RUN)],
    )
    def test_response_errors_map_by_status(self, status: int, kind: K) -> None:
        assert default_outcome(aiohttp_response_error(status)).kind is kind

    def test_a_429_carries_retry_after(self) -> None:
        outcome = default_outcome(aiohttp_response_error(429, {"Retry-After": "4"}))
        assert (outcome.kind, outcome.retry_after) == (K.RATE_LIMITED, 4.0)


class TestRequestsAndSockets:
    def test_requests_errors(self) -> None:
        assert default_outcome(requests.ConnectionError("refused")).kind is K.TRANSIENT
        assert default_outcome(requests.ReadTimeout("slow")).kind is K.TRANSIENT
        assert default_outcome(requests.exceptions.ChunkedEncodingError()).kind is K.TRANSIENT
        assert default_outcome(requests_status_error(502)).kind is K.TRANSIENT
        assert default_outcome(requests_status_error(403)).kind is K.FATAL
        assert default_outcome(requests.exceptions.InvalidURL("x")).kind is K.FATAL

    @pytest.mark.parametrize(
        "exc",
        [
            ConnectionResetError(errno.ECONNRESET, "reset"),
            TimeoutError(),
            socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
            OSError(errno.ENETUNREACH, "Network is unreachable"),
            OSError(errno.EHOSTUNREACH, "No route to host"),
            ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        ],
        ids=repr,
    )
    def test_socket_errors_are_transient(self, exc: BaseException) -> None:
        assert default_outcome(exc).kind is K.TRANSIENT

    @pytest.mark.parametrize(
        "exc",
        [
            FileNotFoundError(errno.ENOENT, "no such file"),
            PermissionError(errno.EACCES, "denied"),
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
        ],
        ids=repr,
    )
    def test_other_os_errors_are_bugs(self, exc: BaseException) -> None:
        assert default_outcome(exc).kind is K.FATAL


class SDKStatusError(Exception):
    """Shaped as the OpenAI and Anthropic SDKs' ``APIStatusError``: a status and the response."""

    def __init__(self, message: str, *, response: Any) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code


class SDKConnectionError(Exception):
    """Shaped as the SDKs' ``APIConnectionError``: raised *from* the transport error."""


class TestAnyErrorWithAStatus:
    def test_an_sdk_status_error_is_read_by_its_fields(self) -> None:
        response = httpx.Response(429, headers={"retry-after-ms": "2500"})
        outcome = default_outcome(SDKStatusError("rate limited", response=response))
        assert (outcome.kind, outcome.retry_after) == (K.RATE_LIMITED, 2.5)
        assert default_outcome(SDKStatusError("x", response=httpx.Response(400))).kind is K.FATAL

    def test_a_bare_status_attribute_is_enough(self) -> None:
        class Overloaded(Exception):
            status = 503

        assert default_outcome(Overloaded()).kind is K.TRANSIENT

    def test_a_status_word_is_not_a_status(self) -> None:
        class Worded(Exception):
            status = "UNAVAILABLE"
            status_code = True  # a bool is not a status either

        assert default_outcome(Worded()).kind is K.FATAL

    def test_an_sdk_error_raised_from_a_transport_error_is_transient(self) -> None:
        exc = SDKConnectionError("Connection error.")
        # What ``raise SDKConnectionError(...) from httpx_error`` sets.
        exc.__cause__ = httpx.ConnectError("refused", request=httpx.Request("POST", URL_TEXT))
        assert default_outcome(exc).kind is K.TRANSIENT

    def test_the_wording_is_never_read(self) -> None:
        assert default_outcome(RuntimeError("503 Service Unavailable, retry")).kind is K.FATAL


class TestRulesInFront:
    def test_the_users_and_the_providers_rules_come_first(self) -> None:
        exc = httpx.ConnectError("refused", request=httpx.Request("GET", URL_TEXT))

        def mine(e: BaseException) -> sr.Outcome | None:
            return sr.Outcome(K.FATAL, "mine") if isinstance(e, httpx.ConnectError) else None

        assert classify(exc, [mine]).message == "mine"
        assert classify(exc, [lambda e: None]).kind is K.TRANSIENT


def test_nothing_optional_is_imported_to_classify() -> None:
    code = (
        "import sys\n"
        "from stagedretry._outcomes import default_outcome\n"
        "class E(Exception):\n"
        "    status_code = 503\n"
        "for exc in (RuntimeError('x'), ConnectionError(), E()):\n"
        "    default_outcome(exc)\n"
        # jsonschema is a dependency of the engine itself (validators.json_schema), not optional.
        "loaded = {'httpx', 'httpx2', 'aiohttp', 'requests', 'pydantic'}\n"
        "print(sorted(loaded & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- through a runner: the issue's examples, as a user wrapping their own HTTP call ----------------


def _request() -> Any:
    return httpx.Request("POST", URL_TEXT)


ISSUE_EXAMPLES = [
    pytest.param(
        lambda: httpx.ConnectError("refused", request=_request()), id="httpx.ConnectError"
    ),
    pytest.param(
        lambda: httpx.ReadTimeout("timed out", request=_request()), id="httpx.ReadTimeout"
    ),
    pytest.param(
        lambda: httpx.RemoteProtocolError("peer closed", request=_request()),
        id="httpx.RemoteProtocolError",
    ),
    pytest.param(aiohttp.ServerDisconnectedError, id="aiohttp.ServerDisconnectedError"),
    pytest.param(
        lambda: aiohttp.ClientPayloadError("Response payload is not completed"),
        id="aiohttp.ClientPayloadError",
    ),
    pytest.param(lambda: status_error(httpx, 503), id="httpx.HTTPStatusError-503"),
]


def flaky(error: Callable[[], BaseException], failures: int = 1) -> Any:
    """A user's own HTTP call: it raises *error* *failures* times, then answers."""
    calls: list[str] = []

    async def call(request: sr.Request, ctx: sr.StageContext) -> str:
        calls.append(request.stage.name)
        if len(calls) <= failures:
            raise error()
        return GOOD

    call.calls = calls  # type: ignore[attr-defined]
    return call


@pytest.mark.parametrize("error", ISSUE_EXAMPLES)
async def test_a_network_error_retries_the_same_stage_and_succeeds(
    error: Callable[[], BaseException],
) -> None:
    call = flaky(error)
    runner = sr.Runner(
        sr.Plan.ladder(),
        from_callable(call),
        validator=sr.validators.json_object(),
        clock=VirtualClock(),
        seed=1,
    )

    result = (await runner.run([("dune", "Catalogue Dune.")])).results[0]

    assert result.ok
    assert [a.outcome for a in result.attempts] == [K.TRANSIENT, K.SUCCEEDED]
    assert [a.stage for a in result.attempts] == ["full_t0", "full_t0"]
    assert result.prompts == 2
    assert call.calls == ["full_t0", "full_t0"]


async def test_a_429_with_retry_after_waits_the_servers_delay_and_spends_no_prompt() -> None:
    clock = VirtualClock()
    call = flaky(lambda: status_error(httpx, 429, {"Retry-After": "7"}))
    runner = sr.Runner(
        sr.Plan.ladder(),
        from_callable(call),
        validator=sr.validators.json_object(),
        clock=clock,
        seed=1,
    )

    result = (await runner.run([("dune", "Catalogue Dune.")])).results[0]

    assert result.ok
    assert [a.outcome for a in result.attempts] == [K.RATE_LIMITED, K.SUCCEEDED]
    assert [a.stage for a in result.attempts] == ["full_t0", "full_t0"]
    assert result.prompts == 1
    assert result.attempts[1].started == pytest.approx(7.0)


async def test_a_503_with_retry_after_waits_the_servers_delay() -> None:
    clock = VirtualClock()
    call = flaky(lambda: status_error(httpx, 503, {"Retry-After": "9"}))
    runner = sr.Runner(
        sr.Plan.ladder(),
        from_callable(call),
        validator=sr.validators.json_object(),
        clock=clock,
        seed=1,
    )

    result = (await runner.run([("dune", "Catalogue Dune.")])).results[0]

    assert result.ok
    assert [a.outcome for a in result.attempts] == [K.TRANSIENT, K.SUCCEEDED]
    assert result.prompts == 2  # a 503 may have been billed: it counts
    assert result.attempts[1].started == pytest.approx(9.0)


async def test_the_callable_strategys_own_rules_stay_in_front() -> None:
    def refuse_connect(exc: BaseException) -> sr.Outcome | None:
        return (
            sr.Outcome(K.FATAL, "no retries here") if isinstance(exc, httpx.ConnectError) else None
        )

    call = flaky(lambda: httpx.ConnectError("refused", request=_request()))
    runner = sr.Runner(
        sr.Plan.ladder(), from_callable(call, rules=[refuse_connect]), clock=VirtualClock()
    )

    result = (await runner.run([("dune", "Catalogue Dune.")])).results[0]

    assert result.status is sr.ItemStatus.FAILED
    assert result.reason == "no retries here"
