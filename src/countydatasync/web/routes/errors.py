"""GET /api/errors: rejected records and flagged loads from the working DB, with their reasons."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from countydatasync.web.deps import SettingsDep
from countydatasync.web.schemas import ErrorPage, ErrorRow, Problem
from countydatasync.web.staging import open_readonly, q

router = APIRouter(tags=["errors"])

# The pipeline takes parcel keys of any length, so this is far beyond any real one; it only bounds the input.
MAX_KEY_LENGTH = 16 * 1024
ERROR_FIELDS = ["id", "run_id", "key", "source_row", "reason", "message", "excerpt", "severity"]


def error_select(key_name: str) -> str:
    return f"SELECT id, run_id, {q(key_name)} AS key, source_row, reason, message, excerpt, severity FROM main.errors"


def error_rows(
    con: sqlite3.Connection,
    key_name: str,
    where: str,
    params: Sequence[object],
    limit: int,
    offset: int = 0,
    newest_first: bool = False,
) -> list[ErrorRow]:
    sql = f"{error_select(key_name)}{where} ORDER BY id{' DESC' if newest_first else ''} LIMIT ? OFFSET ?"
    return [ErrorRow(**dict(zip(ERROR_FIELDS, row, strict=True))) for row in con.execute(sql, [*params, limit, offset])]


@router.get(
    "/api/errors", response_model=ErrorPage, summary="Errors with their reasons", responses={503: {"model": Problem}}
)
def list_errors(
    settings: SettingsDep,
    run_id: Annotated[int | None, Query(ge=1, le=2**62, description="Only this run's errors.")] = None,
    reason: Annotated[str | None, Query(max_length=64, description="Only this reason code.")] = None,
    severity: Annotated[Literal["error", "warning"] | None, Query()] = None,
    key: Annotated[str | None, Query(max_length=MAX_KEY_LENGTH, description="Only this parcel's errors.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ErrorPage:
    clauses: list[str] = []
    params: list[object] = []
    for column, value in (
        ("run_id", run_id),
        ("reason", reason),
        ("severity", severity),
        (settings.source.key_name, key),
    ):
        if value is not None:
            clauses.append(f"{q(column)} = ?")
            params.append(value)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    with open_readonly(settings.output.working_path) as con:
        total = con.execute(f"SELECT count(*) FROM main.errors{where}", params).fetchone()[0]
        items = error_rows(con, settings.source.key_name, where, params, limit, offset)
    return ErrorPage(total=total, items=items)
