"""Formicary-style paging of listings: `page` (from 0) and `page_size` query parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query

from queen.http.schemas import Page

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "PageRequest", "Paging", "page_of"]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500  # larger page sizes are served as 500 (as the gRPC listings do)
_MAX_PAGE = 1_000_000  # keeps offsets far from the database's integer limits


@dataclass(frozen=True, slots=True)
class PageRequest:
    """The page asked for, page size already clamped."""

    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return self.page * self.page_size


def _paging(
    page: Annotated[int, Query(ge=0, le=_MAX_PAGE, description="Page number, from 0.")] = 0,
    page_size: Annotated[
        int,
        Query(ge=1, description=f"Records per page (default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE})."),
    ] = DEFAULT_PAGE_SIZE,
) -> PageRequest:
    return PageRequest(page, min(page_size, MAX_PAGE_SIZE))


Paging = Annotated[PageRequest, Depends(_paging)]


def page_of(
    records: Sequence[T], request: PageRequest, *, total: int | None = None, has_more: bool | None = None
) -> Page[T]:
    """The page envelope: with `total`, the totals and `has_more` follow from it; without, `has_more`
    must be given (found by asking the service for one record more than the page)."""
    if total is not None:
        more = request.offset + len(records) < total
        pages: int | None = math.ceil(total / request.page_size)
    else:
        assert has_more is not None, "give the total or whether more records follow"
        more, pages = has_more, None
    return Page[T](
        records=list(records),
        page=request.page,
        page_size=request.page_size,
        total_records=total,
        total_pages=pages,
        has_more=more,
    )
