"""The pure reference model of a plan: what the engine must do for a script of outcomes.

Written from the documented semantics (the outcome/budget table in the design
notes), not from the runner, so the two can be checked against each other:

* before each request: a partial stage with nothing to repair is skipped (to
  the next stage by order), as is a stage of the user's kind when its declared
  :class:`KindReading` says so; then, if the prompt budget is spent, the item is
  ``exhausted``;
* ``SUCCEEDED`` ends ``succeeded``; ``FATAL`` ends ``failed``;
* ``INVALID`` follows the stage's ``on_invalid``; it leaves the failed fields
  for a later partial stage to repair.  An unreadable answer to a full request
  leaves none; an unreadable answer to a partial request changes nothing, so
  the fields that failed before are still to repair.  A partial answer can get
  wrong only the fields it was asked for (see :func:`wrong_fields`);
* ``TRANSIENT`` stays, unless the stage's ``on_transient`` names a target; once
  the stage has sent ``max_attempts`` requests it gives up and follows
  ``on_give_up`` (default ``on_invalid``);
* ``SHED`` spends no prompt and follows the stage's ``on_shed`` (default: stay);
* ``RATE_LIMITED`` and ``RESOURCE_LOST`` stay and spend no prompt; past
  ``max_rate_limit_waits`` refusals in all (429s and sheds), or
  ``max_resource_lost`` losses in a row, the item ends ``failed``; only a
  request that was served (one that spent a prompt) breaks a row of losses, a
  refusal does not.

Before each request, in this order: a spent budget ends the item ``exhausted``,
so does a passed deadline; a deadline at most ``expedite.within`` seconds away
moves the item to ``expedite.to``; then a stage that has nothing to do is
skipped.  Time depends on jittered waits, so the model reads it from *elapsed*
(seconds since the item started, when it is about to send a request); without
it no time passes: the deadline never passes, and a stage expedites only if its
``within`` is the whole deadline.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import attrs

from .._outcomes import FieldPath, OutcomeKind
from .._plan import Plan, Stage
from .._results import ItemResult, ItemStatus
from .._stages import StageKind
from ._kinds import Asks, Skips, readings
from ._scripted import ScriptStep, Step, wrong_fields

__all__ = ["ExpectedPath", "ReferenceItem", "expected_path"]

_TERMINAL = {
    "succeeded": ItemStatus.SUCCEEDED,
    "failed": ItemStatus.FAILED,
    "exhausted": ItemStatus.EXHAUSTED,
}


@attrs.frozen
class ExpectedPath:
    """What one item must go through: one entry per attempt, then how it ends.

    ``stages``, ``outcomes``, ``counted`` (spent a prompt) and ``fields`` (what
    was asked for: ``None`` for the whole answer) run in parallel.  ``skipped``
    lists partial stages passed over with nothing to repair, ``expedited`` the
    stages left for their ``expedite.to`` as the deadline neared; ``steps_used``
    is how many script steps were played (the default step included).
    """

    stages: tuple[str, ...]
    outcomes: tuple[OutcomeKind, ...]
    counted: tuple[bool, ...]
    fields: tuple[tuple[FieldPath, ...] | None, ...]
    prompts: int
    status: ItemStatus
    skipped: tuple[str, ...] = ()
    steps_used: int = 0
    expedited: tuple[str, ...] = ()

    def differences(self, result: ItemResult) -> list[str]:
        """How *result* departs from this path (empty when it follows it)."""
        out: list[str] = []
        actual_stages = tuple(a.stage for a in result.attempts)
        if actual_stages != self.stages:
            out.append(f"stages: expected {list(self.stages)}, got {list(actual_stages)}")
        actual_outcomes = tuple(a.outcome for a in result.attempts)
        if actual_outcomes != self.outcomes:
            out.append(
                f"outcomes: expected {[o.name for o in self.outcomes]}, "
                f"got {[o.name for o in actual_outcomes]}"
            )
        actual_counted = tuple(a.counted for a in result.attempts)
        if actual_counted != self.counted:
            out.append(f"counted: expected {list(self.counted)}, got {list(actual_counted)}")
        actual_fields = tuple(a.fields for a in result.attempts)
        if actual_fields != self.fields:
            out.append(f"fields: expected {list(self.fields)}, got {list(actual_fields)}")
        if result.prompts != self.prompts:
            out.append(f"prompts: expected {self.prompts}, got {result.prompts}")
        if result.status is not self.status:
            out.append(f"status: expected {self.status.name}, got {result.status.name}")
        return out

    def check(self, result: ItemResult) -> None:
        """Raise ``AssertionError`` listing every difference between *result* and this path."""
        wrong = self.differences(result)
        if wrong:
            raise AssertionError(f"item {result.id!r} left the expected path: " + "; ".join(wrong))


def _heads(fields: Iterable[str]) -> tuple[FieldPath, ...]:
    # A scripted field is one top-level key (never split), so it is its own repair path.
    return tuple(dict.fromkeys((name,) for name in fields))


class ReferenceItem:
    """One item walked through a plan by the reference rules, one step at a time.

    It waits for the next outcome until :attr:`done`; :meth:`play` feeds it
    one.  Used by :func:`expected_path` and the stateful checker.  *stage_kinds*
    are the kinds given to the runner (default the built-in ones); each of the
    user's declares how it is read (:class:`KindReading`), else ``ValueError``.
    *elapsed* gives the seconds since the item started, read before each request
    when the plan has a deadline (default: no time passes).
    """

    def __init__(
        self,
        plan: Plan,
        stage_kinds: Mapping[str, StageKind] | None = None,
        *,
        elapsed: Callable[[], float] | None = None,
    ) -> None:
        self._readings = readings(plan, stage_kinds)
        self._elapsed = elapsed
        self.plan = plan
        self._index = {s.name: i for i, s in enumerate(plan.stages)}
        self.state = plan.stages[0].name
        self.prompts = 0
        self.sent_at = [0] * len(plan.stages)
        self.rate_limit_waits = 0
        self.lost_in_row = 0
        self.repair: tuple[FieldPath, ...] = ()
        self.invalid_seen = False
        self.stages: list[str] = []
        self.outcomes: list[OutcomeKind] = []
        self.counted: list[bool] = []
        self.fields: list[tuple[FieldPath, ...] | None] = []
        self.skipped: list[str] = []
        self.expedited: list[str] = []
        self.steps_used = 0
        self._settle()

    @property
    def done(self) -> bool:
        """Whether the item has reached a terminal state."""
        return self.state in _TERMINAL

    @property
    def status(self) -> ItemStatus | None:
        """The terminal status, or ``None`` while the item is still running."""
        return _TERMINAL.get(self.state)

    @property
    def stage_index(self) -> int | None:
        """The plan index of the stage the item is at (``None`` once it has ended)."""
        return self._index.get(self.state)

    @property
    def stage(self) -> Stage | None:
        """The stage the item is at (``None`` once it has ended)."""
        index = self._index.get(self.state)
        return None if index is None else self.plan.stages[index]

    def asks_for(self) -> tuple[FieldPath, ...] | None:
        """The fields the next request asks for (``None``: the whole answer)."""
        index = self._index.get(self.state)
        if index is None or self._readings[index].asks is not Asks.REPAIR:
            return None
        return self.repair

    def fork(self) -> ReferenceItem:
        """An independent copy at the same point (to see where a step would lead)."""
        twin = copy.copy(self)
        for name in ("sent_at", "stages", "outcomes", "counted", "fields", "skipped", "expedited"):
            setattr(twin, name, list(getattr(self, name)))
        return twin

    def play(self, step: Step) -> None:
        """Feed the outcome of the request the item is about to send."""
        if self.done:
            raise RuntimeError(f"the item has already ended {self.state}")
        step = ScriptStep.of(step)
        stage = self.stage
        assert stage is not None
        index = self._index[stage.name]
        kind = step.kind
        spent = kind not in (OutcomeKind.RATE_LIMITED, OutcomeKind.RESOURCE_LOST, OutcomeKind.SHED)
        self.steps_used += 1
        self.stages.append(stage.name)
        self.outcomes.append(kind)
        self.counted.append(spent)
        asked = self.asks_for()
        self.fields.append(asked)
        if spent:
            self.prompts += 1
            self.sent_at[index] += 1
        if spent:
            # Only a served request breaks a row of losses; a rate-limit refusal does not.
            self.lost_in_row = 0

        if kind is OutcomeKind.SUCCEEDED:
            self.state = "succeeded"
        elif kind is OutcomeKind.FATAL:
            self.state = "failed"
        elif kind is OutcomeKind.INVALID:
            self.invalid_seen = True
            if step.fields or asked is None:
                self.repair = _heads(wrong_fields(step.fields, asked))
            # else: an unreadable answer to a partial request changes nothing, so the
            # fields that failed before are still to repair.
            self.state = self._target(index, stage.on_invalid)
        elif kind is OutcomeKind.TRANSIENT:
            if stage.max_attempts is not None and self.sent_at[index] >= stage.max_attempts:
                give_up = stage.on_invalid if stage.on_give_up is None else stage.on_give_up
                self.state = self._target(index, give_up)
            elif stage.on_transient != "retry":
                self.state = self._target(index, stage.on_transient)
        elif kind is OutcomeKind.RATE_LIMITED or kind is OutcomeKind.SHED:
            self.rate_limit_waits += 1
            if self.rate_limit_waits > self.plan.max_rate_limit_waits:
                self.state = "failed"
            elif kind is OutcomeKind.SHED and stage.on_shed != "retry":
                self.state = self._target(index, stage.on_shed)
        else:  # RESOURCE_LOST
            self.lost_in_row += 1
            if self.lost_in_row > self.plan.max_resource_lost:
                self.state = "failed"
        self._settle()

    def path(self) -> ExpectedPath:
        """The path so far (complete once :attr:`done`)."""
        status = self.status
        if status is None:
            raise RuntimeError("the item has not ended yet")
        return ExpectedPath(
            tuple(self.stages),
            tuple(self.outcomes),
            tuple(self.counted),
            tuple(self.fields),
            self.prompts,
            status,
            tuple(self.skipped),
            self.steps_used,
            tuple(self.expedited),
        )

    def _target(self, index: int, target: str) -> str:
        # Deliberately not ``_plan.resolve_target``: the engine compiles its machine with
        # that helper, so sharing it would let a wrong target pass on both sides.
        if target == "next":
            stages = self.plan.stages
            return stages[index + 1].name if index + 1 < len(stages) else "exhausted"
        if target == "fail":
            return "failed"
        if target == "exhaust":
            return "exhausted"
        return target

    def _settle(self) -> None:
        """Apply what happens without a request: the budget and deadline, expedites, skips."""
        deadline = self.plan.deadline
        while not self.done:
            stage = self.stage
            assert stage is not None
            if self.prompts >= self.plan.max_prompts:
                self.state = "exhausted"
                return
            if deadline is not None:
                left = deadline - (self._elapsed() if self._elapsed is not None else 0.0)
                if left <= 0:
                    self.state = "exhausted"
                    return
                if stage.expedite is not None and left <= stage.expedite.within:
                    self.expedited.append(stage.name)
                    self.state = stage.expedite.to
                    continue
            if self._skips(self._index[stage.name]):
                self.skipped.append(stage.name)
                self.state = self._target(self._index[stage.name], "next")
                continue
            return

    def _skips(self, index: int) -> bool:
        skips = self._readings[index].skips
        if skips is Skips.NOTHING_TO_REPAIR:
            return not self.repair
        if skips is Skips.UNTIL_INVALID:
            return not self.invalid_seen
        return False


def expected_path(
    plan: Plan,
    script: Sequence[Step],
    *,
    default: Step = OutcomeKind.SUCCEEDED,
    stage_kinds: Mapping[str, StageKind] | None = None,
    elapsed: Callable[[int], float] | None = None,
) -> ExpectedPath:
    """What the engine must do with one item whose requests come to *script*, then *default*.

    *stage_kinds* are the kinds given to the runner, when the plan uses your own
    (each declares its :class:`KindReading`).  *elapsed* maps the number of steps
    played so far to the seconds since the item started, for a plan with a
    deadline (default: no time passes; see :class:`ReferenceItem`).  Raises
    ``ValueError`` for a stage whose kind the model cannot read.
    """
    played = 0

    def seconds() -> float:
        assert elapsed is not None
        return elapsed(played)

    item = ReferenceItem(plan, stage_kinds, elapsed=None if elapsed is None else seconds)
    steps: Iterator[Step] = iter(script)
    while not item.done:
        step = next(steps, default)
        played += 1
        item.play(step)
    return item.path()
