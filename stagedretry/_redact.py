"""Masking secrets (an API key) in every text the engine and the app write, by one rule.

A :class:`Secrets` finds a secret in any letter case and any fragment of it at
least :data:`MIN_FRAGMENT` characters long, in the forms a server, a proxy or
an SDK may echo it in (see :class:`Secrets`), and puts :data:`REDACTED` in its
place.  It masks *text*: a string, or the string leaves of plain data; mapping
keys, numbers, booleans and ``None`` are never touched, so masking can never
turn a field name, a status or a count into something a reader cannot load.

The runner masks every error, reason and log event it makes; the journal, the
command's output file and its log mask what they write; the Gemini provider
masks its own log events.  All of them use this module.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, quote_plus

import attrs

from ._outcomes import FieldError
from ._results import Attempt, ItemResult

__all__ = [
    "ENVIRONMENT_KEYS",
    "MIN_FRAGMENT",
    "REDACTED",
    "HoldsSecrets",
    "Secrets",
    "mask_errors",
    "mask_result",
]

REDACTED: Final = "[redacted]"
"""What a secret, or a fragment of one, is replaced by."""

MIN_FRAGMENT: Final = 8
"""The shortest run of characters taken for a piece of a secret (and the shortest secret).

Eight: more than the public ``AIzaSy`` that starts every Gemini key, so that
prefix alone never masks anything, and short enough that any quarter of a
39-character key is found.
"""

ENVIRONMENT_KEYS: Final = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
"""The environment variables whose values are secrets by default: the google-genai SDK's own."""

_Q: Final = 4
"""Characters looked up at each sampled position of a scan (see :meth:`Secrets._spans`)."""

_FALLBACK_MARKS: Final = "#*~^|@!$%&=+-_.:;?"

V = TypeVar("V")


class _Fold(dict[int, int]):
    """One character -> its lower-case form, when that is one character (else itself).

    Per character, so positions in the folded text are positions in the text
    (``str.lower`` may lengthen a string, and lowers a final sigma by context).
    """

    def __missing__(self, code: int) -> int:
        char = chr(code)
        upper = char.upper()
        lower = upper.lower() if len(upper) == 1 else char.lower()
        if len(lower) != 1:
            lower = char.lower()
        folded = ord(lower) if len(lower) == 1 else code
        self[code] = folded
        return folded


_FOLD: Final = _Fold()


def fold(text: str) -> str:
    """*text* with each character case-folded in place (same length, same positions)."""
    if text.isascii():
        return text.lower()
    return text.translate(_FOLD)


def _forms(secret: str) -> set[str]:
    """The texts a secret may be echoed as: itself, escaped, encoded or reversed."""
    forms = {
        secret,
        secret[::-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }
    raw = secret.encode("utf-8")
    for pad in range(3):
        # Base64 at each of the three alignments the secret may have in a longer value;
        # the groups that mix in the neighbours' bytes are left out.
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw).decode("ascii")
            forms.add(text[4 if pad else 0 : (pad + len(raw)) // 3 * 4])
    return forms


class Secrets:
    """The secret strings of a run, and the one rule that masks them in text.

    *values* are the secrets; ``None`` and empty ones are ignored.  A value
    shorter than *min_length* characters (default :data:`MIN_FRAGMENT`, 8) is
    too short to be a real key and is **not** searched for: a one-letter dummy
    key would otherwise mask every such letter of every message.  Such values
    are listed (by length) in :attr:`skipped` so that the caller can warn once.

    What is found, case-insensitively, is any run of at least *min_length*
    characters of a secret in any of these forms: as is; percent-encoded (as in
    a URL's query); JSON- or Python-escaped (as in a quoted error body);
    base64-encoded (as in an ``Authorization`` header); reversed.  Each maximal
    run found is replaced by ``[redacted]`` (or, for a secret that contains
    that marker's brackets or letters, by a marker made of a character no
    secret holds), so no fragment of a secret survives, not even across a
    marker.  A scan samples every fifth position of the text against a set of
    the secrets' four-character pieces and checks around the hits: linear in
    the text's length.

    Raises ``ValueError`` for a *min_length* below 4.
    """

    __slots__ = ("_grams", "_marker", "_min", "_quads", "_short", "_values")

    def __init__(
        self, values: Iterable[str | None] = (), *, min_length: int = MIN_FRAGMENT
    ) -> None:
        if min_length < _Q:
            raise ValueError(f"min_length must be at least {_Q}, got {min_length}")
        kept: set[str] = set()
        short: set[str] = set()
        for value in values:
            if value:
                (kept if len(value) >= min_length else short).add(value)
        self._min = min_length
        # Longest first: iteration gives the secrets as a caller would replace them.
        self._values = tuple(sorted(kept, key=lambda v: (-len(v), v)))
        self._short = frozenset(short)
        m = min_length
        grams: set[str] = set()
        for value in kept:
            for form in _forms(value):
                folded = fold(form)
                grams.update(folded[i : i + m] for i in range(len(folded) - m + 1))
        self._grams = frozenset(grams)
        self._quads = frozenset(g[j : j + _Q] for g in grams for j in range(m - _Q + 1))
        self._marker = _marker(self._grams)

    @classmethod
    def from_environment(
        cls,
        values: Iterable[str | None] = (),
        *,
        names: Iterable[str] = ENVIRONMENT_KEYS,
        environ: Mapping[str, str] | None = None,
        min_length: int = MIN_FRAGMENT,
    ) -> Secrets:
        """*values* and the values of the environment variables *names* (default
        ``GEMINI_API_KEY`` and ``GOOGLE_API_KEY``, the keys the google-genai SDK reads),
        stripped of surrounding whitespace.  *environ* defaults to ``os.environ``."""
        env = os.environ if environ is None else environ
        found = [env.get(name, "").strip() for name in names]
        return cls([*values, *found], min_length=min_length)

    def union(self, values: Iterable[str | None]) -> Secrets:
        """These secrets and *values* (a :class:`Secrets` or any strings), with this minimum."""
        more = [*values, *values._short] if isinstance(values, Secrets) else list(values)
        return Secrets([*self._values, *self._short, *more], min_length=self._min)

    @property
    def min_length(self) -> int:
        """The shortest fragment (and the shortest secret) searched for, in characters."""
        return self._min

    @property
    def skipped(self) -> tuple[int, ...]:
        """The lengths of the secrets too short to search for, shortest first (never the values)."""
        return tuple(sorted(len(v) for v in self._short))

    def __bool__(self) -> bool:
        """Whether anything is searched for."""
        return bool(self._grams)

    def __iter__(self) -> Iterator[str]:
        """The secrets searched for, longest first (the short ones are not)."""
        return iter(self._values)

    def __repr__(self) -> str:
        # Never the values, nor their lengths' sum: only how many there are.
        return f"Secrets({len(self._values)} hidden, {len(self._short)} too short)"

    # -- masking -------------------------------------------------------------------------------

    def found(self, text: str) -> bool:
        """Whether *text* holds any fragment of a secret."""
        return bool(self._grams) and bool(self._spans(fold(text)))

    def text(self, text: str) -> str:
        """*text* with every fragment of every secret replaced by the marker."""
        if not self._grams or len(text) < self._min:
            return text
        spans = self._spans(fold(text))
        if not spans:
            return text
        marker = self._marker
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts += (text[last:start], marker)
            last = end
        parts.append(text[last:])
        return "".join(parts)

    def leaves(self, value: V) -> V:
        """*value* with every string in it masked, through mappings, lists and tuples.

        Mapping keys (field names), numbers, booleans and ``None`` are kept as
        they are, so JSON data keeps its shape and loads back.  An object of
        any other kind is kept unless its ``str()`` holds a secret; it then
        becomes that text, masked.
        """
        if not self._grams:
            return value
        return self._leaves(value)  # type: ignore[no-any-return]

    def _leaves(self, value: Any) -> Any:
        # Iterative: plain data nested deeper than the interpreter's stack still masks.
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if not isinstance(value, Mapping | list | tuple):
            shown = str(value)
            masked = self.text(shown)
            return value if masked == shown else masked
        root: list[Any] = [None]
        # Each frame: (source container, its items, where its copy goes: (parent list, index)).
        stack: list[tuple[Any, Iterator[Any], list[Any], list[Any], int]] = []

        def open_(source: Any, parent: list[Any], index: int) -> None:
            items = iter(source.items()) if isinstance(source, Mapping) else iter(source)
            stack.append((source, items, [], parent, index))

        open_(value, root, 0)
        while stack:
            source, items, built, parent, index = stack[-1]
            item: Any = next(items, _END)
            if item is _END:
                stack.pop()
                if isinstance(source, Mapping):
                    parent[index] = dict(built)
                elif isinstance(source, tuple):
                    parent[index] = tuple(built)
                else:
                    parent[index] = built
                continue
            if isinstance(source, Mapping):
                key, child = item
                built.append([key, None])
                slot, at = built[-1], 1
            else:
                child = item
                built.append(None)
                slot, at = built, len(built) - 1
            if isinstance(child, Mapping | list | tuple):
                open_(child, slot, at)
            else:
                slot[at] = self._leaves(child)
        return root[0]

    def _spans(self, low: str) -> list[tuple[int, int]]:
        """Maximal ``[start, end)`` runs of *low* (folded) made of secrets' fragments.

        Every position that is a multiple of ``s = m - 3`` is looked up as a
        four-character piece; a fragment of ``m`` characters always covers one
        such piece, and the ``m``-character windows holding that piece are then
        checked.  The windows checked for consecutive samples do not overlap,
        so the hits come out in order.
        """
        m = self._min
        grams = self._grams
        quads = self._quads
        n = len(low)
        step = m - _Q + 1
        spans: list[tuple[int, int]] = []
        for i in range(0, n - _Q + 1, step):
            if low[i : i + _Q] not in quads:
                continue
            for j in range(max(0, i - m + _Q), min(i, n - m) + 1):
                if low[j : j + m] in grams:
                    if spans and j <= spans[-1][1]:
                        spans[-1] = (spans[-1][0], j + m)
                    else:
                        spans.append((j, j + m))
        return spans


_END: Final = object()


def _marker(grams: frozenset[str]) -> str:
    """``[redacted]``, unless a secret could be read across it; then a mark no secret holds.

    Any window of the masked text that overlaps the marker holds ``[`` or ``]``
    or lies within ``redacted``: with no fragment holding those, no fragment
    can appear where a marker meets the text around it.
    """
    inner = fold(REDACTED)[1:-1]
    if not any("[" in g or "]" in g or g in inner for g in grams):
        return REDACTED
    used = set().union(*grams)
    for mark in _FALLBACK_MARKS:
        if mark not in used:
            return mark * 3
    code = 0x2588
    while chr(code) in used:  # pragma: no cover - a secret holding every mark above
        code += 1
    return chr(code) * 3


@runtime_checkable
class HoldsSecrets(Protocol):
    """A strategy or shared resource that knows a secret it sends (an API key).

    The runner adds what ``secrets()`` returns to its own :class:`Secrets`, so
    the key is masked in every error, reason and log event of the run without
    the caller naming it twice.
    """

    def secrets(self) -> Iterable[str]:
        """The secret strings this object holds."""


def mask_errors(errors: tuple[FieldError, ...], secrets: Secrets) -> tuple[FieldError, ...]:
    """*errors* with their messages masked; paths and kinds are structure and are kept."""
    return tuple(attrs.evolve(e, message=secrets.text(e.message)) for e in errors)


def mask_result(result: ItemResult[Any], secrets: Secrets) -> ItemResult[Any]:
    """*result* with its text masked: reason, error messages, last invalid answer, attempts'
    errors and response metadata, and the string leaves of ``output``.

    Ids, statuses, stage names, field paths and numbers are structure and are
    kept.  ``output`` is masked only where it is plain data (strings, mappings,
    lists): pass ``jsonable(output)`` to mask a model's fields.
    """
    if not secrets:
        return result
    text = secrets.text

    def attempt(a: Attempt) -> Attempt:
        meta = a.meta
        if meta is not None:
            meta = attrs.evolve(
                meta,
                finish_reason=secrets.leaves(meta.finish_reason),
                safety_ratings=secrets.leaves(dict(meta.safety_ratings)),
                block_reason=secrets.leaves(meta.block_reason),
                model_version=secrets.leaves(meta.model_version),
                response_id=secrets.leaves(meta.response_id),
            )
        return attrs.evolve(
            a,
            error=text(a.error) if a.error is not None else None,
            meta=meta,
            mended=mask_errors(a.mended, secrets),
        )

    output = result.output
    if isinstance(output, str | Mapping | list | tuple):
        output = secrets.leaves(output)
    return attrs.evolve(
        result,
        output=output,
        reason=text(result.reason) if result.reason is not None else None,
        errors=mask_errors(result.errors, secrets),
        last_invalid=secrets.leaves(result.last_invalid),
        attempts=tuple(attempt(a) for a in result.attempts),
    )
