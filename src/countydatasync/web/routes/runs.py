"""GET /api/runs and /api/runs/{run_id}: the run history from the stats DB, with each run's errors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from countydatasync.web.deps import SettingsDep
from countydatasync.web.routes.errors import error_rows
from countydatasync.web.schemas import Problem, ReasonCount, Run, RunDetail, RunPage
from countydatasync.web.staging import has_table, open_readonly

router = APIRouter(tags=["runs"])

RUN_FIELDS = list(Run.model_fields)
RUN_SELECT = f"SELECT {', '.join(RUN_FIELDS)} FROM runs"
RUN_ERRORS_SHOWN = 200


def _run(row: tuple) -> Run:
    return Run(**dict(zip(RUN_FIELDS, row, strict=True)))


@router.get(
    "/api/runs", response_model=RunPage, summary="Run history, newest first", responses={503: {"model": Problem}}
)
def list_runs(
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> RunPage:
    with open_readonly(settings.output.stats_path) as con:
        if not has_table(con, "main", "runs"):
            return RunPage(total=0, items=[])
        total = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        rows = con.execute(f"{RUN_SELECT} ORDER BY run_id DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
    return RunPage(total=total, items=[_run(r) for r in rows])


@router.get(
    "/api/runs/{run_id}",
    response_model=RunDetail,
    summary="One run with its counts and errors",
    responses={404: {"model": Problem}, 503: {"model": Problem}},
)
def get_run(settings: SettingsDep, run_id: Annotated[int, Path(ge=1, le=2**62)]) -> RunDetail:
    out = settings.output
    with open_readonly(out.stats_path) as con:
        row = con.execute(f"{RUN_SELECT} WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise HTTPException(404, f"no run {run_id}")
    with open_readonly(out.working_path) as con:
        counts = [
            ReasonCount(reason=r, severity=s, count=n)
            for r, s, n in con.execute(
                "SELECT reason, severity, count(*) FROM errors WHERE run_id = ? GROUP BY 1, 2 ORDER BY 3 DESC",
                (run_id,),
            )
        ]
        errors = error_rows(con, settings.source.key_name, " WHERE run_id = ?", [run_id], RUN_ERRORS_SHOWN)
    return RunDetail(run=_run(row), error_counts=counts, errors=errors)
