"""Keys as the source stores them and as the sync compares them (issue: incremental sync)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from countydatasync.sync.reconcile import _same_text
from countydatasync.transform.batch import normalize_keys


def test_keys_are_trimmed_text_and_integral_floats_lose_their_point() -> None:
    floats = pd.Series([123.0, 7.5, np.nan, 1e20, -0.0])
    assert normalize_keys(floats).tolist() == ["123", "7.5", pd.NA, "100000000000000000000", "0"]
    text = pd.Series([" 12 ", "", "  ", None, "A-7"], dtype=object)
    assert normalize_keys(text).tolist() == ["12", pd.NA, pd.NA, pd.NA, "A-7"]


def test_keys_read_as_their_normalized_form_need_no_stored_form_of_their_own() -> None:
    """A watermark run re-reads a key in its normalized form and in every stored form that reads otherwise."""
    arrow = pd.Series(["123", " 123", "A-7", None, "B 2 "], dtype=pd.StringDtype("pyarrow"))
    assert _same_text(normalize_keys(arrow), arrow).tolist() == [True, False, True, False, False]
    # what psycopg or pyodbc hand back: numbers compare by their text
    mixed = pd.Series([123, "123 ", None, "9", "  "], dtype=object)
    assert _same_text(normalize_keys(mixed), mixed).tolist() == [True, False, False, True, False]
    floats = pd.Series([123.0, 7.5])
    assert _same_text(normalize_keys(floats), floats).tolist() == [False, True]
