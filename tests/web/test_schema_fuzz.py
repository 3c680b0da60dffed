"""Schemathesis against the app's own OpenAPI document: no 5xx, and every answer matches its schema.

Each operation gets a bounded number of generated requests, valid and invalid, so the run stays fast.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.generation import GenerationMode

from countydatasync.web import create_app
from tests.web.conftest import Staging

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture(scope="module")
def operations(staging: Staging) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(staging.settings))
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_lists_every_api_endpoint(operations: list) -> None:
    labels = {op.label for op in operations}
    assert {
        "GET /api/health",
        "GET /api/runs",
        "GET /api/runs/{run_id}",
        "GET /api/statistics",
        "GET /api/statistics/status",
        "GET /api/parcels",
        "GET /api/parcels/{key}",
        "GET /api/errors",
        "POST /api/sync",
        "GET /api/sync",
        "GET /api/map-config",
    } <= labels
    for op in operations:
        assert "200" in op.definition.raw["responses"] or "202" in op.definition.raw["responses"], op.label


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_answers_match_the_schema(operations: list, mode: GenerationMode) -> None:
    calls = 0
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (list(operation.iter_parameters()) or operation.body):
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(checks=CHECKS)

        run()
    assert calls >= 5 * (len(operations) if mode is GenerationMode.POSITIVE else 4)
