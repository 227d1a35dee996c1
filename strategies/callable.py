"""Wrap any async function as a strategy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from stagedretry import Outcome, Request, Response, Rule, StageContext

from ._sampling import SamplingParams

Generate = Callable[[Request, StageContext], Awaitable[Response | str]]


class CallableStrategy:
    """A strategy made of an async function returning a :class:`Response` or plain text.

    *rules* classify the function's own exceptions, before the engine's defaults.
    *params_type* is the class the stage params are checked against and handed
    to the function as ``ctx.params`` (default :class:`SamplingParams`; a frozen
    attrs class made with :func:`stagedretry.setting` for params of your own;
    ``None`` to check nothing and pass the plan's mapping).
    """

    __slots__ = ("_fn", "_rules", "params_type")

    def __init__(
        self,
        fn: Generate,
        *,
        rules: Iterable[Rule] = (),
        params_type: type[Any] | None = SamplingParams,
    ) -> None:
        self._fn = fn
        self._rules = tuple(rules)
        self.params_type = params_type

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        answer = await self._fn(request, ctx)
        return answer if isinstance(answer, Response) else Response(answer)

    def classify(self, exc: BaseException) -> Outcome | None:
        for rule in self._rules:
            outcome = rule(exc)
            if outcome is not None:
                return outcome
        return None

    def fingerprint_data(self) -> Mapping[str, object]:
        """The function's qualified name (its code is not hashed: rename it when it changes)."""
        fn = self._fn
        name = getattr(fn, "__qualname__", type(fn).__qualname__)
        return {"function": f"{getattr(fn, '__module__', '?')}.{name}"}

    def __repr__(self) -> str:
        return f"CallableStrategy({getattr(self._fn, '__name__', self._fn)!r})"


def from_callable(
    fn: Generate,
    *,
    rules: Iterable[Rule] = (),
    params_type: type[Any] | None = SamplingParams,
) -> CallableStrategy:
    """Wrap *fn* (``async (request, ctx) -> Response | str``) as a strategy."""
    return CallableStrategy(fn, rules=rules, params_type=params_type)
