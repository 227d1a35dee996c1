"""What a stage sends and what a strategy answers, and the strategy protocol.

A strategy (a provider adapter, in the top-level ``strategies`` package) turns
a :class:`Request` into a :class:`Response`, or raises.  It also offers its own
classifier rules, which run after the user's and before the engine's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs

from ._clock import Clock
from ._outcomes import FieldPath, Outcome
from ._plan import Plan, Stage
from ._resources import SharedResource
from ._results import NO_USAGE, ResponseMeta, Usage, WorkItem
from ._state import ItemState


@attrs.frozen
class Request:
    """One request a stage wants sent.

    ``fields`` lists the paths asked for (``None``: the whole answer), each a
    :data:`~stagedretry.FieldPath` cut at its first array index;
    ``kept`` is the already valid part a partial stage keeps.
    """

    item_id: str
    stage: Stage
    prompt: str
    fields: tuple[FieldPath, ...] | None = None
    kept: Mapping[str, Any] | None = None

    @property
    def params(self) -> Mapping[str, Any]:
        return self.stage.params


@attrs.frozen
class Response:
    """A strategy's answer: the text, the tokens it cost and what the provider said."""

    text: str | None
    usage: Usage = NO_USAGE
    meta: ResponseMeta | None = None


class StageContext:
    """Everything a strategy may need besides the request, for one attempt.

    A plain slotted class rather than attrs: one is built per attempt on the
    engine's benchmarked hot path, and it never leaves the attempt.
    """

    __slots__ = ("attempt", "clock", "item", "params", "plan", "resources", "stage", "state")

    def __init__(
        self,
        item: WorkItem,
        state: ItemState,
        stage: Stage,
        plan: Plan,
        resources: Mapping[str, Any],
        clock: Clock,
        attempt: int,
        params: Any = None,
    ) -> None:
        self.item = item
        self.state = state
        self.stage = stage
        self.plan = plan
        self.resources = resources
        self.clock = clock
        self.attempt = attempt
        self.params: Any = stage.params if params is None else params
        """The stage's params, checked: an instance of the strategy's ``params_type``
        (see :class:`DeclaresParams`), or the plan's mapping for a strategy that declares none."""

    def __repr__(self) -> str:
        return (
            f"StageContext(item={self.item.id!r}, stage={self.stage.name!r}, "
            f"attempt={self.attempt})"
        )


@runtime_checkable
class DeclaresParams(Protocol):
    """A strategy that declares the stage params it understands.

    ``params_type`` is a frozen attrs class whose fields are made with
    :func:`stagedretry.setting`.  The runner reads every stage's params into it
    when it is built (raising :class:`PlanError` for an unknown key, a wrong
    type, NaN, infinity or a value out of range, before any request), and each
    attempt's ``ctx.params`` is the stage's instance.
    """

    @property
    def params_type(self) -> type[Any] | None:
        """The class of this strategy's stage params; ``None``: it declares none."""


@runtime_checkable
class UsesResources(Protocol):
    """A strategy that needs shared resources: the runner adds them to its own."""

    def shared_resources(self) -> Sequence[SharedResource]:
        """The resources every request of this strategy uses."""


@runtime_checkable
class PlansResources(Protocol):
    """A strategy whose shared resources depend on the plan it runs: the runner adds them.

    Called once when a runner is built, after :meth:`UsesResources.shared_resources`, with
    the plan and each stage's checked params (in the plan's order); e.g. one context cache
    for each model the stages name.  Such a resource is usually
    :class:`~stagedretry.StageScoped`, so it
    is prepared only when a stage that uses it is first reached.
    """

    def plan_resources(self, plan: Plan, params: Sequence[Any]) -> Sequence[SharedResource]:
        """The resources *plan*'s stages need beyond :meth:`UsesResources.shared_resources`."""


Settle: TypeAlias = Callable[[Usage | None], None]
"""Called once when an admitted request has ended: with its usage, or ``None`` when no
answer came back (refused, failed, or never sent)."""


@runtime_checkable
class Admits(Protocol):
    """A strategy that paces its requests to a quota before sending them.

    The runner awaits :meth:`admit` before each attempt, outside the attempt's
    timeout, and gives it up (cancelling it) when the run stops or drains (nothing
    was sent: the item ends ``cancelled``) or the item's deadline passes.  Once the
    request has ended, the runner calls the returned settle function exactly once.
    An exception out of :meth:`admit` is classified as the attempt's outcome: raise
    :class:`~stagedretry.FatalError` with ``sent=False`` for a request no wait can
    admit, or :class:`~stagedretry.StopRun` for a quota that waiting within the
    run cannot refill.
    """

    async def admit(self, request: Request, ctx: StageContext) -> Settle:
        """Wait until *request* may be sent; return the function that settles it."""


@runtime_checkable
class Strategy(Protocol):
    """A provider adapter."""

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        """Send *request*; return the answer or raise."""

    def classify(self, exc: BaseException) -> Outcome | None:
        """This provider's verdict on *exc*, or ``None`` to leave it to the engine."""
