"""Every case of the hostile corpus: no traceback, a documented exit code, a bounded time."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from stagedretry.cli._exit import ExitCode
from strategies.gemini.emulator import GeminiEmulator

from . import _corpus
from ._corpus import KEY, Case, Ran, run_case


def _cases() -> list[Case]:
    found: list[Case] = []
    package = Path(__file__).parent
    for module in pkgutil.iter_modules([str(package)]):
        if module.name.startswith("cases_"):
            found += importlib.import_module(f"{__package__}.{module.name}").CASES
    return found


CASES = _cases()


def test_the_corpus_is_large_and_its_names_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 60


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=5, invalid_rate=0.0, api_key=KEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, emulator: GeminiEmulator
) -> Iterator[dict[str, Future[Ran]]]:
    # The cases are separate processes: run them side by side, each test waits for its own.
    root = tmp_path_factory.mktemp("hostile")
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield {
            case.name: pool.submit(run_case, case, root / case.name, emulator.base_url)
            for case in CASES
        }


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case: Case, runs: dict[str, Future[Ran]]) -> None:
    ran = runs[case.name].result()
    shown = f"exit {ran.code} after {ran.seconds:.1f} s\nstdout:\n{ran.out}\nstderr:\n{ran.err}"
    assert not ran.timed_out, f"no end within {case.timeout} s\n{shown}"
    assert "Traceback" not in ran.out + ran.err, shown
    assert ran.code in {int(code) for code in ExitCode}, shown
    assert ran.code == case.code, shown
    if case.stderr is not None:
        assert _corpus.re.search(case.stderr, ran.err, _corpus.re.DOTALL), shown
    if case.check is not None:
        case.check(ran)
