"""Where a run's items come from: one at a time, from a sync or async iterable, as work items.

An item is a :class:`WorkItem`, an ``(id, prompt[, context])`` tuple, or a mapping with
``id`` and ``prompt`` keys (a dict, a ``csv.DictReader`` row), whose context is the
mapping itself.  Ids are unique within a run: a journal, an output file and the
caller's own records key results by id.

What "rejected at the start" means depends on what the items are:

* a collection (a list, a tuple, anything sized and iterable more than once) is checked
  whole by :func:`check_items` before the run takes its first item;
* a stream (a generator, an iterator, an async iterable) can only be checked as each item
  arrives, which holds no item in memory: the first bad one stops the run there, before
  it is run, as a failure of the run does (:class:`~stagedretry.ItemError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Collection,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any

from ._describe import describe, key_name
from ._limits import check_unicode
from ._results import ItemLike, Items, WorkItem
from ._stop import ItemError

_SHAPES = "a WorkItem, an (id, prompt[, context]) tuple or a mapping with 'id' and 'prompt' keys"


def _item_id(value: object, position: int) -> str:
    """An id given in a tuple or a mapping: a string with more than blanks, or an integer of
    at most 64 bits (as text; a longer one is not an id but a mistake, and may not even
    print).  The input file of ``stagedretry run`` is held to the same rule."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64:
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise ItemError(
        f"item #{position}: its id must be a non-empty string or an integer, got {describe(value)}",
        position=position,
    )


def _prompt(value: object, position: int) -> str:
    if isinstance(value, str):
        return value
    raise ItemError(
        f"item #{position}: its prompt must be a string, got {describe(value)}",
        position=position,
    )


def as_work_item(value: object, position: int) -> WorkItem:
    """The *position*-th item (1-based) as a :class:`WorkItem`; raise :class:`ItemError`.

    A mapping's ``id`` and ``prompt`` keys make the item and the whole mapping is its
    context (the caller's record, handed back on the result).
    """
    if isinstance(value, WorkItem):
        if type(value.id) is str and value.id.strip() and type(value.prompt) is str:
            item = value  # the common case, checked in the fewest steps
        else:
            # attrs does not check types: a WorkItem(7, ...) would fail deep in the run.
            item = WorkItem(
                _item_id(value.id, position), _prompt(value.prompt, position), value.context
            )
    elif isinstance(value, tuple) and len(value) in (2, 3):
        item = WorkItem(
            _item_id(value[0], position),
            _prompt(value[1], position),
            value[2] if len(value) == 3 else None,
        )
    elif isinstance(value, Mapping):
        item = WorkItem(*_mapping_fields(value, position), value)
    else:
        got = f"a tuple of {len(value)} values" if isinstance(value, tuple) else describe(value)
        raise ItemError(f"item #{position}: expected {_SHAPES}, got {got}", position=position)
    _check_text(item.id, position)
    return item


def _mapping_fields(value: Mapping[Any, Any], position: int) -> tuple[str, str]:
    missing = [key for key in ("id", "prompt") if key not in value]
    if missing:
        keys = ", ".join(repr(key_name(k)) for k in list(value)[:8]) or "none"
        raise ItemError(
            f"item #{position}: a mapping needs 'id' and 'prompt' keys; it lacks "
            f"{' and '.join(repr(k) for k in missing)} (its keys: {keys})",
            position=position,
        )
    return _item_id(value["id"], position), _prompt(value["prompt"], position)


def _check_text(item_id: str, position: int) -> None:
    if not item_id.isascii():
        try:
            check_unicode(item_id)
        except ValueError:
            # A journal, an output file and a log all key results by id: it must be text.
            raise ItemError(
                f"item #{position}: its id {item_id!r} holds a lone surrogate", position=position
            ) from None


class Ids:
    """The ids seen so far in a run, each with its position: a repeated one is an error.

    Memory grows with the number of distinct ids (one entry per item), not with the items.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def add(self, item_id: str, position: int) -> None:
        """Note *item_id* at *position*; raise :class:`ItemError` if it came before."""
        first = self._seen.setdefault(item_id, position)
        if first != position:
            raise ItemError(
                f"item #{position} repeats the id {item_id!r} of item #{first}: ids must be "
                "unique in a run (results, a journal and an output file are keyed by id)",
                position=position,
            )

    def position(self, item_id: str) -> int:
        """Where the item *item_id* was in the run's items (1-based)."""
        return self._seen[item_id]


def check_container(items: object) -> None:
    """Refuse, with ``TypeError``, *items* that are not an iterable of items but one item or
    text: iterating them would hand out their keys, characters or fields as items."""
    hint = None
    if isinstance(items, str | bytes | bytearray | memoryview):
        hint = f"{describe(items)}, whose characters are no items"
    elif isinstance(items, Mapping):
        hint = (
            "one mapping, whose keys are no items: give a list of mappings ([item] for one "
            "item), or a dict's .items() for (id, prompt) pairs"
        )
    elif isinstance(items, WorkItem):
        hint = "one WorkItem: give a list of them ([item] for one)"
    elif (
        isinstance(items, tuple)
        and len(items) in (2, 3)
        and isinstance(items[0], str | int)
        and isinstance(items[1], str)
    ):
        hint = "one (id, prompt) tuple: give a list of them ([item] for one)"
    elif not isinstance(items, Iterable | AsyncIterable):
        hint = describe(items)
    if hint is not None:
        raise TypeError(
            f"items must be an iterable or async iterable of items ({_SHAPES}), got {hint}"
        )


def is_collection(items: Items) -> bool:
    """Whether *items* can be checked whole before a run: sized, and not a one-pass iterator."""
    return isinstance(items, Collection) and not isinstance(items, Iterator | AsyncIterable)


def check_items(items: Items) -> None:
    """Check every item of a collection (see :func:`is_collection`); raise :class:`ItemError`.

    Nothing is kept but the ids seen, to find a repeated one.
    """
    ids = Ids()
    for position, value in enumerate(items, start=1):  # type: ignore[arg-type]
        ids.add(as_work_item(value, position).id, position)


class Source:
    """Hands items to workers one at a time from a sync or async iterable, as work items.

    :meth:`next_sync` and :meth:`next` raise :class:`ItemError` for an item that is not
    one, or whose id came before; the item is not handed out.
    """

    __slots__ = ("_aiter", "_iter", "_lock", "_position", "ids")

    def __init__(self, items: Items) -> None:
        self._position = 0
        self.ids = Ids()
        self._iter: Iterator[ItemLike] | None = None
        self._aiter: AsyncIterator[ItemLike] | None = None
        if isinstance(items, AsyncIterable):
            self._aiter = aiter(items)
            # Async generators refuse concurrent __anext__ calls.
            self._lock: asyncio.Lock | None = asyncio.Lock()
        else:
            self._iter = iter(items)
            self._lock = None

    @property
    def is_sync(self) -> bool:
        return self._iter is not None

    def next_sync(self) -> tuple[int, WorkItem] | None:
        value = next(self._iter, _DONE)  # type: ignore[arg-type]
        if value is _DONE:
            return None
        return self._take(value)

    async def next(self) -> tuple[int, WorkItem] | None:
        assert self._aiter is not None
        assert self._lock is not None
        async with self._lock:
            try:
                value = await anext(self._aiter)
            except StopAsyncIteration:
                return None
            return self._take(value)

    def _take(self, value: object) -> tuple[int, WorkItem]:
        self._position += 1
        position = self._position
        item = as_work_item(value, position)
        self.ids.add(item.id, position)
        return position, item

    async def aclose(self) -> None:
        close = getattr(self._aiter, "aclose", None)
        if close is not None:
            await close()


_DONE: Any = object()
