"""Stateful checking of a plan: the real engine against the reference model (needs hypothesis).

Each hypothesis rule decides what the live item's next request comes to; the
real ``Runner`` (with a :class:`ScriptedStrategy` and a :class:`VirtualClock`)
plays it, and invariants compare where the engine went with where the
reference model says it must go.  A failure is shrunk to the shortest script of
outcomes that shows it.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from textwrap import shorten
from typing import Any, ClassVar, Final

import attrs
from hypothesis import HealthCheck, Phase
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from .._outcomes import FieldPath, OutcomeKind, Rule, json_pointer
from .._plan import MAX_DEADLINE, Plan
from .._results import Attempt, BatchResult, ItemResult, WorkItem
from .._runner import Runner
from .._stages import StageKind, builtin_kinds
from .._state import ItemState
from .._strategy import Request, Response, StageContext
from .._usage import ResponseMeta
from ._answers import AnswerDrawer, AnswerReference, AnswerSpec, AnswerStep
from ._classification import (
    Classifies,
    ErrorExamples,
    Misclassified,
    classify_chain,
    error_examples,
    with_errors,
    wrong_verdicts,
)
from ._clock import VirtualClock
from ._generators import ITEM_OUTCOMES
from ._generators import outcomes as outcome_steps
from ._kinds import reading_of
from ._reach import PlanCheckResult, ReachTally, advancing, advancing_steps, swarm_outcomes
from ._reference import ReferenceItem
from ._scripted import (
    DEFAULT_ANSWER,
    RecordedRequest,
    ScriptedStrategy,
    ScriptStep,
    chosen_outcomes,
)

__all__ = ["PlanCheckFailed", "PlanCheckResult", "check_plan", "plan_state_machine"]

_ITEM = "item"
_PROMPT = "Describe the book."
# Real seconds the engine may take to react to one step before the check calls it stuck.
_STUCK_AFTER = 10.0


class PlanCheckFailed(AssertionError):
    """The engine left the reference path; ``script`` is the (shrunk) script that shows it."""

    def __init__(self, message: str, script: Sequence[ScriptStep]) -> None:
        super().__init__(message)
        self.script = tuple(script)


class _LiveStrategy(ScriptedStrategy):
    """A scripted strategy whose steps arrive while the item runs, one rule at a time."""

    def __init__(self, answer: Mapping[str, Any], text_answers: bool) -> None:
        super().__init__({}, answer=answer, text_answers=text_answers)
        self._queue: deque[ScriptStep] = deque()
        self.hungry = asyncio.Event()
        self._fed = asyncio.Event()
        self.state: ItemState | None = None

    def push(self, step: ScriptStep) -> None:
        self._queue.append(step)
        self.hungry.clear()
        self._fed.set()

    async def next_step(self, request: Request, ctx: StageContext) -> ScriptStep:
        self.state = ctx.state
        while not self._queue:
            # The next rule has not run yet: virtual time must not move meanwhile,
            # or a request timeout would fire while the "model" is still thinking.
            hold: AbstractContextManager[None] = (
                ctx.clock.hold() if isinstance(ctx.clock, VirtualClock) else nullcontext()
            )
            with hold:
                self.hungry.set()
                await self._fed.wait()
            self._fed.clear()
        self.hungry.clear()
        return self._queue.popleft()

    def act(self, step: ScriptStep, request: RecordedRequest) -> Response:
        if isinstance(step, AnswerStep):
            # Generated text, read by the stages' real parsing and the user's validator.
            meta = (
                ResponseMeta(finish_reason="MAX_TOKENS", truncated=True) if step.truncated else None
            )
            return Response(step.text, self._usage_for(request), meta)
        return super().act(step, request)


@attrs.frozen
class _Seen:
    """What the engine shows of the live item: its position, prompts and attempts."""

    position: str
    prompts: int
    attempts: tuple[Attempt, ...]
    result: ItemResult | None


def plan_state_machine(
    plan: Plan,
    *,
    reference: Plan | None = None,
    answer: Mapping[str, Any] = DEFAULT_ANSWER,
    outcomes: Sequence[OutcomeKind | str] | None = None,
    max_steps: int = 30,
    text_answers: bool = False,
    stage_kinds: Mapping[str, StageKind] | None = None,
    errors: ErrorExamples | None = None,
    classifier: Classifies | None = None,
    rules: Sequence[Rule] = (),
    answers: type[Any] | Mapping[str, Any] | None = None,
    validator: Callable[[str], Any] | None = None,
    kinds: Sequence[OutcomeKind | str] | None = None,
) -> type[RuleBasedStateMachine]:
    """A hypothesis state machine checking the engine running *plan* against the reference.

    The reference model follows *reference* (default: *plan* itself); pass the
    plan you meant to write to check the one you wrote against it.  Rules draw
    outcomes of the given *kinds* (``INVALID`` ones name fields of *answer*).
    With *text_answers* an ``INVALID`` outcome is answered as text (JSON with
    the named fields wrong, or text that is not JSON) and read by the stages'
    real parsing, rather than raised (see :class:`ScriptedStrategy`).
    With *answers* (a pydantic model class or a JSON Schema) every
    ``SUCCEEDED`` and ``INVALID`` outcome is answered with generated text: a
    valid answer, or a near-miss (a wrong type, a value out of range, a
    missing or forbidden key, an answer cut off by the token limit) whose
    broken paths the reference then expects the partial stages to re-ask,
    exactly.  The text is read by *validator*, the user's own (default:
    ``validators.pydantic(model)`` or ``validators.json_schema(schema)``).
    Use ``plan_state_machine(plan).TestCase`` as a unittest/pytest test class;
    its ``reach`` attribute counts the stages the examples reached.
    The plan's item deadline is left out: it depends on jittered waits.  A
    stage's ``expedite`` is kept as seen at the item's start: one whose
    ``within`` is the whole deadline moves on at once, the others never do.

    *outcomes* are the outcome kinds drawn, as :class:`OutcomeKind` members or
    their names (default every kind but ``STOP_RUN``, and ``SHED`` only if a stage
    declares ``on_shed``; ``kinds=`` is the deprecated old name).  *stage_kinds*
    are your stage kinds, the mapping you give ``Runner(kinds=...)``; each
    declares how the reference reads it (:class:`KindReading`).

    *errors* maps outcome kinds to exceptions your client raises (one or a
    sequence each, e.g. ``strategies.gemini.error_examples()``): a step of such
    a kind raises one of them, and the runner classifies it with *rules*, then
    *classifier*'s ``classify()`` (your strategy), then the engine's defaults,
    so a wrong classification is reported with the script that shows it.
    Raises ``ValueError`` for a plan or kind the reference cannot follow.
    """
    drawn = kinds = chosen_outcomes(
        outcomes, kinds, _item_outcomes(plan, reference), "plan_state_machine"
    )
    if OutcomeKind.STOP_RUN in kinds:
        raise ValueError("STOP_RUN stops the whole run: the reference model follows one item")
    engine_plan = _timeless(plan)
    model_plan = _timeless(reference if reference is not None else plan)
    # Reject plans the model cannot follow, now rather than per example.
    ReferenceItem(model_plan, stage_kinds)
    if validator is not None and answers is None:
        raise ValueError("a validator= needs answers= (a pydantic model or a JSON Schema) to read")
    if answers is not None and (text_answers or dict(answer) != dict(DEFAULT_ANSWER)):
        raise ValueError(
            "answers= generates the answers: it takes neither answer= nor text_answers="
        )
    spec = AnswerSpec(answers) if answers is not None else None
    user_validator = validator if validator is not None or spec is None else spec.validator()
    reference_type = ReferenceItem if spec is None else AnswerReference
    answer = dict(answer)
    examples = error_examples(errors or {}, "errors")
    # Swarm testing: each example draws from a subset of the kinds, so some walk deep.
    tally = ReachTally([s.name for s in engine_plan.stages])
    step_strategy = with_errors(
        swarm_outcomes(
            lambda some: outcome_steps(tuple(answer), outcomes=some), tuple(kinds), key=tally
        ),
        examples,
    )
    advance = advancing(tally)
    classify_rules = classify_chain(classifier, rules, "plan_state_machine", "classifier")
    engine_kinds = {s.name: s.kind for s in engine_plan.stages}
    keeps_prompt = {s.name: _keeps_prompt(s.kind, stage_kinds) for s in engine_plan.stages}

    class PlanMachine(RuleBasedStateMachine):
        """Feeds outcomes to one live item and checks every move against the reference."""

        last_failure: ClassVar[tuple[str, tuple[ScriptStep, ...]] | None] = None
        #: How deep the examples so far went (see :class:`PlanCheckResult`).
        reach: ClassVar[ReachTally] = tally
        #: The outcome kinds the scripts draw from.
        outcomes: ClassVar[tuple[OutcomeKind, ...]] = drawn

        def __init__(self) -> None:
            super().__init__()
            self._loop = asyncio.new_event_loop()
            self._strategy = _LiveStrategy(answer, text_answers)
            self._validate = user_validator or self._strategy.validator()
            self._drawer = AnswerDrawer(spec) if spec is not None else None
            runner = Runner(
                engine_plan,
                self._strategy,
                validator=self._validate,
                clock=VirtualClock(),
                concurrency=1,
                seed=0,
                kinds=stage_kinds,
                rules=classify_rules,
            )
            self._model = reference_type(model_plan, stage_kinds)
            self._script: list[ScriptStep] = []
            self._task: asyncio.Task[BatchResult] = self._loop.create_task(
                runner.run([WorkItem(_ITEM, _PROMPT)])
            )
            try:
                self._settle()
            except BaseException:
                self.teardown()  # hypothesis only tears down machines it got back
                raise

        # -- driving ------------------------------------------------------------

        if spec is None:

            @rule(step=step_strategy, data=st.data())
            def request_comes_to(self, step: ScriptStep, data: st.DataObject) -> None:
                # Some examples mostly advance: a deep stage may need a precise run of outcomes.
                if data.draw(advance) and not self._model.done:
                    ahead = advancing_steps(self._model, tuple(answer), drawn)
                    if ahead:
                        step = data.draw(st.sampled_from(ahead))
                self._play(step)

        else:

            @rule(step=step_strategy, data=st.data())
            def request_comes_to(self, step: ScriptStep, data: st.DataObject) -> None:
                # The answer fits the request the reference says comes next: whole or partial.
                assert self._drawer is not None
                asked = None if self._model.done else self._model.asks_for()
                self._play(self._drawer.answer(data.draw, step, asked))

        def _play(self, step: ScriptStep) -> None:
            self._script.append(step)
            if not self._model.done:
                self._model.play(step)
            self._strategy.push(step)
            self._settle()

        def _settle(self) -> None:
            """Run the loop until the engine waits for the next step or the item ends."""
            task = self._task

            async def quiet() -> bool:
                hungry = asyncio.ensure_future(self._strategy.hungry.wait())
                try:
                    done, _ = await asyncio.wait(
                        {task, hungry}, timeout=_STUCK_AFTER, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    hungry.cancel()
                return bool(done)

            if task.done():
                return
            if not self._loop.run_until_complete(quiet()):
                self._fail(f"the engine neither asked for a request nor ended in {_STUCK_AFTER} s")
            if task.done() and task.exception() is not None:
                self._fail(f"the engine raised {task.exception()!r}")

        def _seen(self) -> _Seen:
            if self._task.done():
                result = self._task.result().results[0]
                return _Seen(result.status.value, result.prompts, result.attempts, result)
            state = self._strategy.state
            assert state is not None, "the engine has not sent its first request"
            return _Seen(state.state, state.prompts, tuple(state.attempts), None)

        def _fail(self, problem: str) -> None:
            script = tuple(self._script)
            type(self).last_failure = (problem, script)
            shown = ", ".join(str(s) for s in script) or "no steps"
            raise AssertionError(f"{problem}\n  script: [{shown}]")

        def _last(self) -> str:
            return f"after {self._script[-1]}" if self._script else "at the start"

        # -- invariants -----------------------------------------------------------

        @invariant()
        def a_raised_error_is_classified_as_scripted(self) -> None:
            # Named to run first (hypothesis runs invariants by name): a wrong
            # classification is the cause, a wrong path only its effect.
            wrong = Misclassified.first(self._strategy.requests, self._seen().attempts)
            if wrong is not None:
                self._fail(str(wrong))

        @invariant()
        def prompt_budget_is_never_exceeded(self) -> None:
            seen = self._seen()
            if seen.prompts > engine_plan.max_prompts:
                self._fail(f"{seen.prompts} prompts spent, the budget is {engine_plan.max_prompts}")
            if seen.prompts != self._model.prompts:
                self._fail(
                    f"{self._last()}: {seen.prompts} prompts counted, "
                    f"the reference counts {self._model.prompts}"
                )

        @invariant()
        def moves_as_declared(self) -> None:
            # TRANSIENT stays unless on_transient/max_attempts say otherwise; INVALID
            # follows on_invalid; a partial stage with nothing to repair is skipped.
            seen = self._seen()
            if seen.position != self._model.state:
                where = self._model.stages[-1] if self._model.stages else engine_plan.stages[0].name
                # How the engine ended says why (a stage kind's skip names the kind).
                why = f" ({seen.result.reason})" if seen.result and seen.result.reason else ""
                self._fail(
                    f"{self._last()} at stage {where!r}: the engine is at {seen.position!r}"
                    f"{why}, the reference says {self._model.state!r}"
                )

        @invariant()
        def attempts_follow_the_reference(self) -> None:
            seen = self._seen()
            actual = [(a.stage, a.outcome, a.counted) for a in seen.attempts]
            expected = list(
                zip(self._model.stages, self._model.outcomes, self._model.counted, strict=True)
            )
            if actual != expected:
                self._fail(f"{self._last()}: attempts {actual}, the reference has {expected}")

        @invariant()
        def partial_stages_ask_only_for_failed_fields(self) -> None:
            asked = [r.fields for r in self._strategy.requests]
            expected = self._model.fields[: len(asked)]
            if spec is not None:
                # A validator names failures in its own order: the paths must agree as a set.
                same = [_unordered(a) for a in asked] == [_unordered(e) for e in expected]
            else:
                same = asked == expected
            if not same:
                self._fail(f"{self._last()}: requests asked for {asked}, expected {expected}")

        @invariant()
        def requests_carry_the_items_prompt(self) -> None:
            # A kind that drops the prompt sends a request the model cannot answer well,
            # which no outcome script shows: it is checked on the request itself.
            for request in self._strategy.requests:
                if keeps_prompt.get(request.stage, True) and _PROMPT not in request.prompt:
                    kind = engine_kinds.get(request.stage, "?")
                    self._fail(
                        f"{self._last()}: the request of stage {request.stage!r} (kind {kind!r}) "
                        f"does not carry the item's prompt {_PROMPT!r}: "
                        f"{shorten(request.prompt, 80)!r}"
                    )

        @invariant()
        def terminal_states_absorb(self) -> None:
            # Steps are still fed once the reference has ended: a live engine would take them.
            if self._model.done and len(self._strategy.requests) > len(self._model.stages):
                self._fail(f"{self._last()}: the item sent a request after it had ended")

        @invariant()
        def a_success_validates(self) -> None:
            result = self._seen().result
            if result is not None and result.ok:
                if spec is not None:
                    invalid, forbidden = spec.failures(spec.output_data(result.output))
                    if invalid or forbidden:
                        shown = ", ".join(sorted(json_pointer(p) for p in invalid | forbidden))
                        self._fail(
                            f"the item succeeded with an output {spec.name} refuses at {shown}"
                        )
                    return
                try:
                    self._validate(json.dumps(result.output))
                except Exception as exc:
                    self._fail(f"the item succeeded with an invalid output: {exc}")

        def teardown(self) -> None:
            tally.record(
                [r.stage for r in self._strategy.requests],
                self._model.skipped,
                len(self._script),
                self._model.state if self._model.done else None,
            )
            loop = self._loop
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    PlanMachine.__name__ = PlanMachine.__qualname__ = "PlanMachine"
    PlanMachine.TestCase.settings = Settings(
        stateful_step_count=max_steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    return PlanMachine


def _item_outcomes(plan: Plan, reference: Plan | None) -> tuple[OutcomeKind, ...]:
    """The outcome kinds drawn by default: every kind but ``STOP_RUN``, and ``SHED`` only
    for a plan that says where a shed request goes.  Elsewhere a shed stays on its stage
    under the cap of a 429 (which the reference model cannot tell from one), so drawing it
    would only thin out the draws that walk deep into the plan."""
    declared = any(
        s.on_shed != "retry" for p in (plan, reference) if p is not None for s in p.stages
    )
    if declared:
        return ITEM_OUTCOMES
    return tuple(k for k in ITEM_OUTCOMES if k is not OutcomeKind.SHED)


# Long enough that no example's waits reach it (30 steps of at most 300 s by default).
_NO_DEADLINE: Final = MAX_DEADLINE


def _timeless(plan: Plan) -> Plan:
    """*plan* as checked without time: no deadline, expedites as seen at the item's start."""
    if plan.deadline is None or all(s.expedite is None for s in plan.stages):
        return attrs.evolve(plan, deadline=None)
    # An expedite needs a deadline: it gets one no example reaches, and a window that is
    # either all of it (it moves on at once, as it would) or a sliver of it (it never does).
    deadline = plan.deadline
    stages = tuple(
        s
        if s.expedite is None
        else attrs.evolve(
            s,
            expedite=attrs.evolve(
                s.expedite,
                within=_NO_DEADLINE if s.expedite.within >= deadline else _SLIVER,
            ),
        )
        for s in plan.stages
    )
    return attrs.evolve(plan, stages=stages, deadline=_NO_DEADLINE)


_SLIVER: Final = 0.001


def _keeps_prompt(kind: str, stage_kinds: Mapping[str, StageKind] | None) -> bool:
    found = (stage_kinds if stage_kinds is not None else builtin_kinds()).get(kind)
    try:
        return found is None or reading_of(kind, found).keeps_prompt
    except (TypeError, ValueError):  # the reference plan is the one that must be readable
        return True


def _unordered(paths: Sequence[FieldPath] | None) -> frozenset[FieldPath] | None:
    return None if paths is None else frozenset(paths)


def check_plan(
    plan: Plan,
    *,
    reference: Plan | None = None,
    answer: Mapping[str, Any] = DEFAULT_ANSWER,
    outcomes: Sequence[OutcomeKind | str] | None = None,
    max_examples: int = 100,
    max_steps: int = 30,
    settings: Settings | None = None,
    text_answers: bool = False,
    stage_kinds: Mapping[str, StageKind] | None = None,
    errors: ErrorExamples | None = None,
    classifier: Classifies | None = None,
    rules: Sequence[Rule] = (),
    answers: type[Any] | Mapping[str, Any] | None = None,
    validator: Callable[[str], Any] | None = None,
    kinds: Sequence[OutcomeKind | str] | None = None,
) -> PlanCheckResult:
    """Check the engine running *plan* against the reference model, in one call.

    Returns a :class:`PlanCheckResult`: how many examples reached each stage
    (``result.unreached`` names the stages none did) and how they ended.
    Raises :class:`PlanCheckFailed` (an ``AssertionError``) naming the first
    broken property and the shrunk script of outcomes that breaks it, or saying
    that your code came to another end when a script was replayed, or listing
    the *errors* of kinds no script draws (``STOP_RUN``, or left out of
    *outcomes*) that your rules classify as another kind, checked once the
    scripts pass.  Runs its
    own event loop: call it from synchronous code.  *settings* replaces the
    hypothesis settings built from *max_examples* and *max_steps*; *outcomes*,
    *text_answers*, *stage_kinds*, *errors*, *classifier*, *rules*, *answers* and
    *validator* are as for :func:`plan_state_machine` (``kinds=`` is the deprecated
    name of *outcomes*).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("check_plan() runs its own event loop: call it from synchronous code")
    chain = classify_chain(classifier, rules, "check_plan", "classifier")  # named as check_plan
    machine = plan_state_machine(
        plan,
        reference=reference,
        answer=answer,
        outcomes=chosen_outcomes(outcomes, kinds, _item_outcomes(plan, reference), "check_plan"),
        max_steps=max_steps,
        text_answers=text_answers,
        stage_kinds=stage_kinds,
        errors=errors,
        classifier=classifier,
        rules=rules,
        answers=answers,
        validator=validator,
    )
    chosen = settings or Settings(
        max_examples=max_examples,
        stateful_step_count=max_steps,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow],
    )
    # Hypothesis's explain phase re-runs a failure many times to annotate a report that
    # check_plan replaces with its own: with per-step draws it cost four times the search.
    chosen = Settings(chosen, phases=[p for p in chosen.phases if p is not Phase.explain])
    try:
        run_state_machine_as_test(machine, settings=chosen)
    except Flaky as exc:
        # The same script replayed came to another end: user code that is not a function
        # of its input spoils shrinking, so it is named rather than shown as hypothesis's.
        failure = getattr(machine, "last_failure", None)
        problem, script = failure if failure is not None else ("", ())
        shown = ", ".join(str(s) for s in script) or "no steps"
        seen = f"\n  first seen: {problem.splitlines()[0]}" if problem else ""
        raise PlanCheckFailed(
            "the engine does not do the same when the same script is replayed: a stage kind, "
            "validator, classify() or rule of yours keeps state from one item to the next "
            f"or draws at random{seen}\n  script ({len(script)} step(s)): [{shown}]",
            script,
        ) from exc
    except AssertionError as exc:
        failure = getattr(machine, "last_failure", None)
        if failure is None:
            raise
        problem, script = failure
        shown = ", ".join(str(s) for s in script) or "no steps"
        raise PlanCheckFailed(
            f"the engine leaves the reference path: {problem.splitlines()[0]}\n"
            f"  shrunk script ({len(script)} step(s)): [{shown}]",
            script,
        ) from exc
    # Examples of kinds no script drew (STOP_RUN ends the run, not the item; or left out of
    # outcomes=) were never raised: classified once here, so none passes unchecked.
    drawn = set(getattr(machine, "outcomes"))  # noqa: B009 (set in the class body)
    examples = error_examples(errors or {}, "errors")
    unscripted = {kind: found for kind, found in examples.items() if kind not in drawn}
    wrong = wrong_verdicts(unscripted, chain, "errors")
    if wrong:
        kinds_shown = ", ".join(kind.name for kind in unscripted)
        raise PlanCheckFailed(
            f"errors= examples of kinds no script draws ({kinds_shown}), classified as the "
            f"runner would, {len(wrong)} wrong:\n" + "\n".join(wrong),
            (),
        )
    tally: ReachTally = getattr(machine, "reach")  # noqa: B009 (set in the class body)
    return tally.result()
