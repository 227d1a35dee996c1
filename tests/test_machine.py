"""The plan compiled onto one ``transitions`` machine, shared by every item."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import weakref
from pathlib import Path
from typing import Any

import attrs
import pytest
import transitions
from transitions import MachineError

import stagedretry as sr
from stagedretry._machine import TERMINAL_STATES, Trigger, compile_plan
from strategies.callable import from_callable

PACKAGE = Path(sr.__file__).parent


class Cursor:
    """The smallest thing the machine can move: it only needs a ``state``."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


def fire(plan: sr.Plan, source: str, trigger: Trigger) -> str:
    compiled = compile_plan(plan)
    return compiled.fire(Cursor(source), trigger)


class TestConfiguration:
    def test_plain_machine_without_model_or_auto_transitions(self) -> None:
        compiled = compile_plan(sr.Plan.ladder())
        machine = compiled.machine

        assert type(machine) is transitions.Machine
        assert machine.auto_transitions is False
        assert machine.models == []
        assert not any(name.startswith("to_") for name in machine.events)
        assert set(machine.states) == {*(s.name for s in sr.Plan.ladder().stages), *TERMINAL_STATES}
        # Every trigger but EXPEDITE, which only a stage with an ``expedite`` declares.
        assert set(machine.events) == {t.value for t in Trigger} - {"expedite"}

    def test_only_the_machine_module_imports_transitions(self) -> None:
        importing = sorted(
            path.relative_to(PACKAGE).as_posix()
            for path in PACKAGE.rglob("*.py")
            if re.search(r"^\s*(import transitions|from transitions\b)", path.read_text(), re.M)
        )

        assert importing == ["_machine.py"]

    def test_transitions_logger_is_silenced(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)  # the root logger: transitions' own level must win
        compiled = compile_plan(sr.Plan.ladder())
        cursor = Cursor("full_t0")
        compiled.fire(cursor, Trigger.INVALID)
        with pytest.raises(MachineError):
            compiled.fire(Cursor("succeeded"), Trigger.INVALID)

        assert cursor.state == "partial_t0"
        assert [r for r in caplog.records if r.name.startswith("transitions")] == []


class TestDeclaredMoves:
    plan = sr.Plan.ladder()

    @pytest.mark.parametrize(
        ("source", "trigger", "dest"),
        [
            ("full_t0", Trigger.SUCCEED, "succeeded"),
            ("full_t0", Trigger.INVALID, "partial_t0"),
            ("partial_t0", Trigger.INVALID, "full_t25"),
            ("full_t25", Trigger.INVALID, "partial_t25"),
            ("partial_t25", Trigger.INVALID, "exhausted"),
            ("full_t25", Trigger.TRANSIENT, "full_t25"),
            ("partial_t0", Trigger.RATE_LIMITED, "partial_t0"),
            ("full_t0", Trigger.RESOURCE_LOST, "full_t0"),
            ("full_t25", Trigger.FATAL, "failed"),
            ("full_t0", Trigger.GIVE_UP, "partial_t0"),
            ("partial_t0", Trigger.SKIP, "full_t25"),
            ("partial_t25", Trigger.SKIP, "exhausted"),
            ("partial_t0", Trigger.EXHAUST, "exhausted"),
            ("full_t0", Trigger.ABORT, "failed"),
        ],
    )
    def test_ladder(self, source: str, trigger: Trigger, dest: str) -> None:
        assert fire(self.plan, source, trigger) == dest

    def test_a_full_stage_cannot_be_skipped(self) -> None:
        with pytest.raises(MachineError):
            fire(self.plan, "full_t25", Trigger.SKIP)

    @pytest.mark.parametrize("terminal", TERMINAL_STATES)
    @pytest.mark.parametrize("trigger", list(Trigger))
    def test_terminal_states_absorb(self, terminal: str, trigger: Trigger) -> None:
        cursor = Cursor(terminal)
        # A plan that declares every trigger: a ladder whose first stage may expedite.
        first, *rest = self.plan.stages
        plan = sr.Plan(
            [attrs.evolve(first, expedite=sr.Expedite(10.0, rest[0].name)), *rest], deadline=60
        )

        with pytest.raises(MachineError):
            compile_plan(plan).fire(cursor, trigger)
        assert cursor.state == terminal

    def test_declared_targets(self) -> None:
        plan = sr.Plan(
            [
                sr.Stage("ask", on_invalid="check", on_transient="fallback"),
                sr.Stage("check", "partial", on_invalid="fail", on_transient="exhaust"),
                sr.Stage("fallback", on_invalid="ask", on_transient="next"),
            ]
        )

        assert fire(plan, "ask", Trigger.INVALID) == "check"
        assert fire(plan, "ask", Trigger.GIVE_UP) == "check"
        assert fire(plan, "ask", Trigger.TRANSIENT) == "fallback"
        assert fire(plan, "check", Trigger.INVALID) == "failed"
        assert fire(plan, "check", Trigger.TRANSIENT) == "exhausted"
        assert fire(plan, "check", Trigger.SKIP) == "fallback"
        assert fire(plan, "fallback", Trigger.INVALID) == "ask"
        assert fire(plan, "fallback", Trigger.TRANSIENT) == "exhausted"

    def test_the_cursor_is_not_made_a_model(self) -> None:
        compiled = compile_plan(self.plan)
        cursor = Cursor("full_t0")

        for trigger in (Trigger.TRANSIENT, Trigger.INVALID, Trigger.SKIP, Trigger.SUCCEED):
            compiled.fire(cursor, trigger)

        assert cursor.state == "succeeded"
        assert compiled.machine.models == []


class _CountingMachines:
    """Records every ``transitions.Machine`` built while installed (subclasses included)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built: list[weakref.ref[Any]] = []
        original = transitions.Machine.__init__

        def counting_init(machine: Any, *args: Any, **kwargs: Any) -> None:
            self.built.append(weakref.ref(machine))
            original(machine, *args, **kwargs)

        monkeypatch.setattr(transitions.Machine, "__init__", counting_init)


def live_machines() -> list[Any]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, transitions.Machine)]


async def test_one_machine_per_plan_not_per_item(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two honest counts: every Machine constructed (the public constructor, wrapped), and
    # every Machine alive while 50 items are in flight (the garbage collector's view).
    earlier = live_machines()  # held, so their ids cannot be reused meanwhile
    before = {id(m) for m in earlier}
    counting = _CountingMachines(monkeypatch)
    seen_states: set[str] = set()
    alive_mid_run: list[set[int]] = []

    async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
        seen_states.add(ctx.state.state)
        if request.item_id == "500":
            alive_mid_run.append({id(m) for m in live_machines()} - before)
        # Every third item fails validation once, so items walk more than one stage.
        if int(request.item_id) % 3 == 0 and ctx.stage.name == "full_t0":
            return "not json"
        await asyncio.sleep(0)  # let the other workers' items be in flight meanwhile
        return '{"ok": true}'

    runner = sr.Runner(
        sr.Plan.ladder(),
        from_callable(answer),
        validator=sr.validators.json_object(),
        concurrency=50,
    )
    batch = await runner.run((str(i), "prompt") for i in range(1_000))

    assert batch.succeeded == 1_000
    assert seen_states == {"full_t0", "full_t25"}  # the partial stage was skipped: no JSON
    assert len(counting.built) == 1
    machine = counting.built[0]()
    assert machine is not None
    assert machine is runner._compiled.machine
    assert alive_mid_run == [{id(machine)}]
    assert machine.models == []
