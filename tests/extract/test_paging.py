"""Keyset paging on its own: a key that does not survive the trip to Python and back stops the run."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from countydatasync.errors import SchemaError
from countydatasync.extract.base import RAW_KEY, paginate


def test_a_page_that_does_not_move_past_its_last_key_raises_instead_of_looping() -> None:
    """What citext keys did through ADBC: read back as bytes, bound again they selected the same page."""
    page = pd.DataFrame({RAW_KEY: [b"a", b"A"]})
    seen: list[object] = []

    def same_page_whatever_last(last: object, limit: int) -> pd.DataFrame:
        seen.append(last)
        return page

    pages = paginate(same_page_whatever_last, lambda key: page, batch_size=2)
    with pytest.raises(SchemaError, match=r"paging by the key column stopped at key b'a'"):
        list(itertools.islice(pages, 20))  # the bound keeps a regression from hanging the suite
    assert seen == [None, b"a"]
