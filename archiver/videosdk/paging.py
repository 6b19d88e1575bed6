"""Walking VideoSDK's paged lists, whatever paging shape a list answers with, always to an end.

Shapes (shared/reference/videosdk.md section 2, "Paging"), all accepted on every list:
  {"pageInfo": {"currentPage", "perPage", "lastPage", "total"}, "data": [...]}      the documented one
  {"pageInfo": {"page", "totalPages", ...}, ...}                                    seen by VideoSDK's SDK
  {"pagination": {"page", "perPage", "totalPages", "total"}, ...}                   seen by VideoSDK's SDK
  {"data": [...], "nextCursor": "..." | null}  (also inside pageInfo/pagination)   rooms: `cursor` paging
Items sit under ``data``, or under ``recordings`` for the merge list.

Every field is checked at the edge: a paging field of the wrong type is ``bad_response`` naming it.
The loop ends on the last page, an empty page or a null cursor, and it refuses to be led in circles:
a cursor seen before, a page other than the one asked for, a page that holds only items already
listed, or more than MAX_PAGES pages are each ``bad_response`` (a server that lies about
``lastPage`` or repeats a cursor would otherwise keep a reconcile running forever).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_PAGES", "Page", "PagingError", "read_page", "walk"]

MAX_PAGES = 10_000  # 200,000 items at 20 a page: far beyond one room's recordings of one kind
Fetch = Callable[[dict[str, str | int]], Mapping[str, Any]]  # query parameters -> the decoded JSON body


class PagingError(ValueError):
    """The list's answer cannot be paged through; the message names the field or the loop."""


@dataclass(frozen=True)
class Page:
    items: list[Any]
    current: int | None  # the page number the server says this is
    last: int | None  # lastPage / totalPages
    next_cursor: str | None
    cursor_shape: bool  # the answer carries a nextCursor field (possibly null): cursor paging


def _count(block: Mapping[str, Any], where: str, *names: str) -> int | None:
    for name in names:
        value = block.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PagingError(f"response field '{where}.{name}' is not a non-negative integer")
        return value
    return None


def read_page(body: Mapping[str, Any], items_fields: tuple[str, ...] = ("data",)) -> Page:
    """One page's items and paging facts; raises PagingError naming a missing or mistyped field."""
    field = next((f for f in items_fields if f in body), items_fields[0])
    items = body.get(field)
    if not isinstance(items, list):
        raise PagingError(f"response field '{field}' is {'missing' if field not in body else 'not a list'}")
    blocks = [(name, body[name]) for name in ("pageInfo", "pagination") if name in body]
    for name, block in blocks:
        if not isinstance(block, Mapping):
            raise PagingError(f"response field '{name}' is not an object")
    cursor_holders = [("", body), *blocks]
    cursor_shape = any("nextCursor" in holder for _, holder in cursor_holders)
    next_cursor = None
    for name, holder in cursor_holders:
        value = holder.get("nextCursor")
        if value is not None and not isinstance(value, str):
            raise PagingError(f"response field '{name + '.' if name else ''}nextCursor' is not text")
        next_cursor = next_cursor or (value if value and value.strip() else None)
    current = last = None
    for name, block in blocks:
        current = current if current is not None else _count(block, name, "currentPage", "page")
        last = last if last is not None else _count(block, name, "lastPage", "totalPages")
        for unused in ("perPage", "total"):  # unused, but a mistyped one says the answer is not what we think
            _count(block, name, unused)
    if not blocks and not cursor_shape:
        raise PagingError("response field 'pageInfo' (or 'pagination', or 'nextCursor') is missing")
    if blocks and last is None and not cursor_shape:
        raise PagingError(f"response field '{blocks[0][0]}.lastPage' (or 'totalPages') is missing")
    return Page(items, current, last, next_cursor, cursor_shape)


def _identity(item: Any) -> str:
    if isinstance(item, Mapping):
        for name in ("id", "_id", "roomId"):
            if isinstance(item.get(name), str) and item[name]:
                return f"{name}:{item[name]}"
    try:
        text = json.dumps(item, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(item)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def walk(fetch: Fetch, *, per_page: int = 20, items_fields: tuple[str, ...] = ("data",),
         max_pages: int = MAX_PAGES) -> Iterator[list[Any]]:
    """Yield each page's items, page 1 first (``page``/``perPage``, or ``cursor``/``perPage`` once
    the server hands out a ``nextCursor``). Raises PagingError for an answer that cannot be paged
    or a loop that would not end. Stop iterating to stop paging (nothing more is fetched)."""
    page, cursor = 1, None
    cursors: set[str] = set()
    seen: set[str] = set()
    for count in range(1, max_pages + 1):
        params: dict[str, str | int] = {"perPage": per_page}
        params.update({"cursor": cursor} if cursor is not None else {"page": page})
        result = read_page(fetch(params), items_fields)
        if cursor is None and result.current is not None and result.current != page:
            raise PagingError(f"asked for page {page}, the answer says it is page {result.current}")
        yield result.items
        if not result.items:
            return
        fresh = {_identity(item) for item in result.items} - seen
        if not fresh:
            raise PagingError(f"page {count} lists only items already listed: the server repeats itself")
        seen |= fresh
        if result.next_cursor is not None:
            if result.next_cursor in cursors:
                raise PagingError("nextCursor repeats a cursor already followed: the server leads in a circle")
            cursors.add(result.next_cursor)
            cursor = result.next_cursor
        elif result.cursor_shape and (cursor is not None or result.last is None):
            return  # a null cursor: the last page
        elif result.last is None or page >= result.last:
            return
        else:
            page += 1
    raise PagingError(f"more than {max_pages} pages: the server keeps announcing more")
