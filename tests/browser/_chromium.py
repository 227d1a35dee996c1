"""A headless Chromium driven over the DevTools protocol: load a page, read it, photograph it.

Chromium is Debian's (``/usr/bin/chromium``; ``.ci/run`` installs it).  It runs
with no network at all (every host name resolves to nothing), a fresh profile,
and its DevTools endpoint on a loopback port it picks; the protocol is spoken
over one websocket (the ``websockets`` package).  Every wait is bounded.

Written here rather than taken from Playwright: Playwright's Python package
drives its own browser builds (a download this machine cannot make) and brings
a Node runtime; what the tests need is four protocol calls.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs
from PIL import Image
from websockets.sync.client import ClientConnection, connect

CHROMIUM: Final = "/usr/bin/chromium"
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no network but loopback
    "--window-size=1200,1600",
)


APT_TIMEOUT: Final = 900.0
"""Real seconds an install of Chromium may take on a fresh machine (a download of ~100 MB)."""


def executable() -> str:
    """Chromium's path, installed from Debian's packages first when it is missing and we may.

    The README's test command runs on a fresh machine: as root with apt-get there,
    the first browser test installs Chromium itself (bounded by :data:`APT_TIMEOUT`),
    as ``.ci/run`` does.  Otherwise a failing assertion says how to get it.
    """
    found = _found()
    if found is None and _may_install():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ("apt-get", "-qq", "-o", "Dpkg::Use-Pty=0")
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            for args in (("update",), ("install", "-y", "--no-install-recommends", "chromium")):
                subprocess.run(
                    (*apt, *args), env=env, capture_output=True, timeout=APT_TIMEOUT, check=True
                )
        found = _found()
    assert found, (
        "the browser tests need Debian's Chromium: apt-get install -y --no-install-recommends "
        "chromium (.ci/run installs it)"
    )
    return found


def _found() -> str | None:
    return shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)


def _may_install() -> bool:
    return os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get") is not None


@attrs.frozen
class Loaded:
    """A page once *ready* held: what it logged as errors, and a value read from it."""

    errors: tuple[str, ...]
    value: Any


class Browser:
    """One Chromium process and one tab, spoken to over the DevTools protocol."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._next = 0
        self.errors: list[str] = []
        self.load_fired = False

    def call(self, method: str, timeout: float = 10.0, **params: Any) -> Any:
        """Send one command and return its result, noting the error events that come first."""
        self._next += 1
        number = self._next
        self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"Chromium did not answer {method} within {timeout} s"
            message = json.loads(self._socket.recv(timeout=left))
            if message.get("id") == number:
                assert "error" not in message, f"{method}: {message['error']}"
                return message.get("result", {})
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Page.loadEventFired":
            self.load_fired = True
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(
                f"exception: {details.get('exception', {}).get('description') or details}"
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [a.get("value", a.get("description")) for a in params.get("args", ())]
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def load(self, url: str, ready: str, *, timeout: float = 10.0) -> Loaded:
        """Open *url* and wait until the JavaScript expression *ready* is truthy."""
        self.errors.clear()
        self.load_fired = False
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.load_fired:  # the old page's readyState says nothing of the new one
            left = deadline - time.monotonic()
            assert left > 0, f"{url} did not load within {timeout} s"
            self._note(json.loads(self._socket.recv(timeout=left)))
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(f"document.readyState === 'complete' && ({ready})")
            if value:
                break
            time.sleep(0.1)
        # Whatever else the page logs as it settles.
        with contextlib.suppress(TimeoutError):
            while True:
                self._note(json.loads(self._socket.recv(timeout=0.3)))
        return Loaded(tuple(self.errors), value)

    def screenshot(self, selector: str) -> Image.Image:
        """A picture of the element *selector* (scrolled into view), as a PIL image."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView();"
            " const r = e.getBoundingClientRect();"
            " return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}; })()"
        )
        assert box, f"no {selector} on the page"
        assert min(box["width"], box["height"]) > 0, f"{selector} is not visible: {box}"
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={**box, "scale": 1},
        )
        return Image.open(io.BytesIO(base64.b64decode(shot["data"])))


def assert_not_blank(image: Image.Image, *, colours: int, inked: float) -> None:
    """Fail unless *image* has more than *colours* colours and more than the share *inked* of
    its pixels differ from its most common colour (the background)."""
    count, share = not_blank(image)
    assert count > colours, f"{count} colours: the picture is (nearly) blank"
    assert share > inked, f"{share:.1%} of the pixels drawn: the picture is (nearly) blank"


def not_blank(image: Image.Image) -> tuple[int, float]:
    """How many colours *image* has, and the share of its pixels that are not background."""
    rgb = image.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 20) or []
    background = max(colours)[1] if colours else (255, 255, 255)
    pixels = rgb.width * rgb.height
    inked = pixels - sum(count for count, colour in colours if colour == background)
    return len(colours), inked / pixels


@contextlib.contextmanager
def chromium(timeout: float = 10.0) -> Iterator[Browser]:
    """Start Chromium, yield a :class:`Browser` on a blank tab, and stop it."""
    binary = executable()
    # Chromium's helper processes may still write to the profile as it goes: they are
    # stopped with it (one process group), and a file they leave is no test failure.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                assert process.poll() is None, f"Chromium exited with {process.returncode}"
                assert time.monotonic() < deadline, "Chromium did not start its DevTools"
                time.sleep(0.05)
            port = int(port_file.read_text().splitlines()[0])
            # Loopback, never through a proxy the environment may name.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                targets = json.load(answer)
            page = next(t for t in targets if t.get("type") == "page")
            with connect(
                page["webSocketDebuggerUrl"], max_size=None, open_timeout=5, proxy=None
            ) as socket:
                browser = Browser(socket)
                for domain in ("Page", "Runtime", "Log"):
                    browser.call(f"{domain}.enable")
                yield browser
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop Chromium and its helper processes (its session's group), each wait bounded."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
