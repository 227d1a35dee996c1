"""The user's own error classification: their client's exceptions, their ``classify()``.

The user maps outcome kinds to exceptions their client raises (or takes a
provider's map, such as ``strategies.gemini.error_examples()``).
:func:`check_classification` checks a strategy's verdict on each example; the
stateful checker raises the examples in its scripts, so a wrong verdict shows
as the shortest script it spoils.  This module needs no hypothesis until the
state machine asks for :func:`with_errors`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, cast

import attrs

from .._outcomes import Outcome, OutcomeKind, Rule, classify, describe
from .._results import Attempt
from ._scripted import RecordedRequest, ScriptStep, outcome_kind, shown_error

if TYPE_CHECKING:
    from hypothesis import strategies as st

__all__ = [
    "Classifies",
    "ErrorExamples",
    "Misclassified",
    "check_classification",
    "classify_chain",
    "error_examples",
]


class Classifies(Protocol):
    """Anything with a strategy's ``classify()``: a :class:`~stagedretry.Strategy`, say."""

    def classify(self, exc: BaseException) -> Outcome | None:
        """The verdict on *exc*, or ``None`` to leave it to the rules after."""


_Examples: TypeAlias = BaseException | Sequence[BaseException]
ErrorExamples: TypeAlias = Mapping[OutcomeKind, _Examples] | Mapping[str, _Examples]
"""Outcome kinds (or their names) to the exceptions that must come to them: one or a sequence."""


def error_examples(
    examples: ErrorExamples, where: str, *, raised: bool = True
) -> dict[OutcomeKind, tuple[BaseException, ...]]:
    """*examples* with kinds resolved, each value a tuple; errors name *where*.

    With *raised* (the state machine) only kinds a client raises are allowed:
    ``SUCCEEDED`` answers and ``INVALID`` is the validator's verdict on an answer,
    which the harness scripts itself.
    """
    if not isinstance(examples, Mapping):
        raise TypeError(f"{where} maps outcome kinds to exceptions, not {type(examples).__name__}")
    out: dict[OutcomeKind, tuple[BaseException, ...]] = {}
    items: list[tuple[OutcomeKind | str, _Examples]] = list(examples.items())
    for key, value in items:
        try:
            kind = outcome_kind(key)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        if isinstance(value, BaseException):
            errors: tuple[object, ...] = (value,)
        elif isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
            errors = tuple(value)
        else:
            errors = (value,)
        bad = [e for e in errors if not isinstance(e, BaseException)]
        if bad:
            raise TypeError(f"{where}[{kind.name}]: {_not_an_exception(bad[0])}")
        if not errors:
            raise ValueError(f"{where}[{kind.name}]: no exception given")
        if kind is OutcomeKind.SUCCEEDED or (raised and kind is OutcomeKind.INVALID):
            raise ValueError(
                f"{where}[{kind.name}]: {kind.name} is not raised by a client "
                "(the harness scripts answers and invalid answers itself)"
            )
        out[kind] = out.get(kind, ()) + cast("tuple[BaseException, ...]", errors)
    return out


def _not_an_exception(value: object) -> str:
    if isinstance(value, type) and issubclass(value, BaseException):
        # The class, where the client raises an instance: the classifier reads its fields.
        return f"{value.__name__} is an exception class; give an instance, {value.__name__}(...)"
    return f"{value!r} is not an exception"


def with_errors(
    steps: st.SearchStrategy[ScriptStep], examples: Mapping[OutcomeKind, Sequence[BaseException]]
) -> st.SearchStrategy[ScriptStep]:
    """*steps* where a step of a kind in *examples* raises one of its exceptions."""
    from hypothesis import strategies as st

    if not examples:
        return steps
    choices = {kind: st.sampled_from(tuple(errors)) for kind, errors in examples.items()}

    def attach(step: ScriptStep) -> st.SearchStrategy[ScriptStep]:
        errors = choices.get(step.kind)
        if errors is None:
            return st.just(step)
        # The exception says everything (its own retry delay, its resource): no scripted extras.
        return errors.map(lambda error: ScriptStep(step.kind, error=error))

    return steps.flatmap(attach)


@attrs.frozen
class Misclassified:
    """A scripted exception the runner's rules classified as another kind."""

    error: BaseException
    expected: OutcomeKind
    got: OutcomeKind

    @classmethod
    def first(
        cls, requests: Sequence[RecordedRequest], attempts: Sequence[Attempt]
    ) -> Misclassified | None:
        """The first request whose scripted exception came to another kind.

        Each request is one attempt, so the two run in parallel.
        """
        for request, attempt in zip(requests, attempts, strict=False):
            error = request.step.error
            if error is not None and attempt.outcome is not request.step.kind:
                return cls(error, request.step.kind, attempt.outcome)
        return None

    def __str__(self) -> str:
        return (
            f"{shown_error(self.error)} was classified {self.got.name}, "
            f"the script says {self.expected.name}"
        )


def classify_chain(
    classifier: Classifies | None, rules: Sequence[Rule], where: str, name: str
) -> tuple[Rule, ...]:
    """*rules*, then *classifier*'s ``classify()``, in the runner's order.

    Raises ``TypeError`` naming a rule that is not callable or a classifier
    without a ``classify()`` method; *where* names the function and *name*
    its strategy argument, for the messages.
    """
    if callable(rules) or not isinstance(rules, Sequence):
        one = ": use [rule]" if callable(rules) else ""
        raise TypeError(
            f"{where}(rules=...) is a sequence of rules, not {type(rules).__name__}{one}"
        )
    for i, rule in enumerate(rules):
        if not callable(rule):
            raise TypeError(f"{where}(rules=...)[{i}]: {rule!r} is not callable")
    if classifier is None:
        return tuple(rules)
    classify_method = getattr(classifier, "classify", None)
    if not callable(classify_method):
        hint = (
            ": a function is a rule, pass it in rules=[...]"
            if callable(classifier)
            else ", such as your Strategy"
        )
        raise TypeError(
            f"{where}({name}=...) takes an object with a classify() method{hint}; "
            f"got {type(classifier).__name__}"
        )
    return (*rules, classify_method)


def _verdict(error: BaseException, rules: Sequence[Rule]) -> Outcome | str:
    try:
        return classify(error, rules)
    except Exception as exc:  # a bug in a rule is a finding, reported with the others
        return f"classify() raised {describe(exc)}"


def check_classification(
    strategy: Classifies, examples: ErrorExamples, *, rules: Sequence[Rule] = ()
) -> None:
    """Check that each example exception comes to its outcome kind, as the runner would classify it.

    *examples* maps outcome kinds (or their names) to one exception or a
    sequence of them.  Each is classified as ``Runner(strategy, rules=rules)``
    does: *rules* first, then ``strategy.classify()``, then the engine's own
    defaults.  Raises ``AssertionError`` listing every mismatch (and any rule
    that raised), ``TypeError``/``ValueError`` for malformed *examples*.
    """
    if strategy is None:
        raise TypeError("check_classification() needs the strategy whose classify() it checks")
    chain = classify_chain(strategy, rules, "check_classification", "strategy")
    checked = error_examples(examples, "examples", raised=False)
    wrong = wrong_verdicts(checked, chain, "examples")
    if wrong:
        name = type(strategy).__name__
        total = sum(len(errors) for errors in checked.values())
        raise AssertionError(
            f"{name}.classify() gets {len(wrong)} of {total} example(s) wrong:\n" + "\n".join(wrong)
        )


def wrong_verdicts(
    examples: Mapping[OutcomeKind, Sequence[BaseException]], rules: Sequence[Rule], where: str
) -> list[str]:
    """A line for each example that *rules* classify as another kind, named by its place."""
    wrong: list[str] = []
    for kind, errors in examples.items():
        for i, error in enumerate(errors):
            verdict = _verdict(error, rules)
            got = verdict if isinstance(verdict, str) else f"classified {verdict.kind.name}"
            if isinstance(verdict, str) or verdict.kind is not kind:
                # Named by its place in *examples*: the key is the kind it should come to.
                wrong.append(f"  {where}[{kind.name}][{i}] {shown_error(error)}: {got}")
    return wrong
