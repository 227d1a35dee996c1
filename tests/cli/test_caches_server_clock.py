"""``caches list`` tells a cache's life left on the server's clock, not the local one.

``expire_time`` is the server's; with a server clock 40 minutes ahead of ours a cache with
ten minutes left used to be shown as 50 minutes from expiry (and, 40 minutes behind, as
expired half an hour ago).  The list's ``Date`` header gives the server's now.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagedretry.cli._app import _life_left
from stagedretry.cli._endpoint import server_offset
from strategies.gemini.emulator import GeminiEmulator, make_client

from .conftest import command

ROOT = Path(__file__).resolve().parents[2]
TTL = 600


@pytest.mark.parametrize("offset", [2400.0, -2400.0, 86_000.0])
def test_caches_list_reads_the_life_left_on_the_servers_clock(
    offset: float, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    with GeminiEmulator(seed=4, min_cache_tokens=1, clock_offset=offset) as emu:
        client = make_client(emu.base_url)
        try:
            client.caches.create(
                model="gemini-2.5-flash",
                config={
                    "display_name": f"stagedretry:skew:{'0123456789abcdef' * 2}",
                    "system_instruction": "rules " * 50,
                    "ttl": f"{TTL}s",
                },
            )
        finally:
            client.close()
        path = os.pathsep.join(p for p in (str(ROOT), subprocess_env.get("PYTHONPATH")) if p)
        env = {**subprocess_env, "PYTHONPATH": path}
        env.pop("GEMINI_API_KEY", None)
        env.pop("GOOGLE_API_KEY", None)
        done = subprocess.run(
            command("caches", "list", "--base-url", emu.base_url, "--json"),
            capture_output=True,
            cwd=tmp_path,
            env=env,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    # Within the Date header's second (and the time the test takes) of the TTL.
    assert TTL - 30 <= row["expires_in"] <= TTL + 1


@given(
    offset=st.integers(min_value=-86_400, max_value=86_400),
    sent=st.floats(min_value=1e9, max_value=4e9),
    trip=st.floats(min_value=0.0, max_value=2.0),
)
def test_the_offset_from_a_date_header_is_within_its_second_and_the_round_trip(
    offset: int, sent: float, trip: float
) -> None:
    import email.utils

    stamped = sent + trip / 2 + offset  # the server's time when it answered
    date = email.utils.formatdate(int(stamped), usegmt=True)
    found = server_offset({"Date": date}, sent=sent, received=sent + trip)
    assert found is not None
    assert abs(found - offset) <= 0.5 + trip / 2 + 1e-6


@pytest.mark.parametrize(
    "headers", [None, {}, {"date": "yesterday"}, {"Date": "Sun, 06 Nov 1994 08:49:37 -0000"}, []]
)
def test_no_readable_date_gives_no_offset(headers: object) -> None:
    assert server_offset(headers, sent=1e9, received=1e9) is None


@given(
    ttl=st.floats(min_value=1, max_value=7 * 86400),
    since_set=st.floats(min_value=0, max_value=3600),
    error=st.floats(min_value=-1.0, max_value=1.0),
)
def test_the_life_shown_never_exceeds_what_the_server_last_gave(
    ttl: float, since_set: float, error: float
) -> None:
    # The server set the cache (update_time) *since_set* seconds before its true now; the
    # listing's estimate of that now is off by *error* (a Date names a whole second).
    set_at = 1.8e9
    expire = set_at + ttl
    shown = _life_left(
        expire, datetime.datetime.fromtimestamp(set_at, datetime.UTC), set_at + since_set + error
    )
    assert shown is not None
    assert shown <= round(ttl, 1)
    assert abs(shown - (ttl - since_set)) <= abs(error) + 0.05 or shown == round(ttl, 1)
