"""Where a run's items come from: one at a time, from a sync or async iterable, as work items."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

from ._limits import check_unicode
from ._results import ItemLike, Items, WorkItem


def as_work_item(value: object, position: int) -> WorkItem:
    """Accept a :class:`WorkItem` or an ``(id, prompt[, context])`` tuple."""
    if isinstance(value, WorkItem):
        item = value
    elif isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[1], str):
        item = WorkItem(str(value[0]), value[1], value[2] if len(value) == 3 else None)
    else:
        raise TypeError(
            f"item #{position}: expected a WorkItem or an (id, prompt) tuple, "
            f"got {type(value).__name__}"
        )
    if not item.id.isascii():
        try:
            check_unicode(item.id)
        except ValueError:
            # A journal, an output file and a log all key results by id: it must be text.
            raise TypeError(
                f"item #{position}: its id {item.id!r} holds a lone surrogate"
            ) from None
    return item


class Source:
    """Hands items to workers one at a time from a sync or async iterable."""

    __slots__ = ("_aiter", "_iter", "_lock", "_position")

    def __init__(self, items: Items) -> None:
        self._position = 0
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

    def next_sync(self) -> tuple[int, ItemLike] | None:
        value = next(self._iter, _DONE)  # type: ignore[arg-type]
        if value is _DONE:
            return None
        self._position += 1
        return self._position, value

    async def next(self) -> tuple[int, ItemLike] | None:
        assert self._aiter is not None
        assert self._lock is not None
        async with self._lock:
            try:
                value = await anext(self._aiter)
            except StopAsyncIteration:
                value = _DONE
        if value is _DONE:
            return None
        self._position += 1
        return self._position, value

    async def aclose(self) -> None:
        close = getattr(self._aiter, "aclose", None)
        if close is not None:
            await close()


_DONE: Any = object()
