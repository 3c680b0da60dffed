"""GET /api/errors rejects filter values SQLite cannot bind instead of failing with a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("run_id", ["99999999999999999999", str(2**62 + 1), "-1", "0"])
def test_a_run_id_out_of_range_is_422(client: TestClient, run_id: str) -> None:
    assert client.get("/api/errors", params={"run_id": run_id}).status_code == 422


def test_the_largest_run_id_is_an_empty_page(client: TestClient) -> None:
    body = client.get("/api/errors", params={"run_id": str(2**62)}).json()
    assert body == {"total": 0, "items": []}
