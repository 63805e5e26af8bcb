"""The "what if": run a packaged scenario of the decision simulator with a changed detox policy,
follow it, and read its result (the numbers and series of the simulator's report)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

import asyncpg
from fastapi import APIRouter, Depends, Path, Request

from dynamo_common.app import ProblemError
from dynamo_common.policy.errors import PolicyErrors
from dynamo_common.simulation.scenario import ScenarioError
from dynamo_detox.api.deps import Paging, runtime, user
from dynamo_detox.repository import simulations as store
from dynamo_detox.runtime import DetoxRuntime
from dynamo_detox.schemas import (
    Page,
    ScenarioOut,
    SimulationDetail,
    SimulationOut,
    SimulationRequest,
    SimulationSubmitted,
)
from dynamo_detox.service.simulations import (
    SimulationSpec,
    SimulationWorker,
    UnknownScenario,
    packaged_scenarios,
    prepare,
    scenario_info,
)

router = APIRouter(prefix="/api/v1", tags=["simulations"])

Status = Literal["queued", "running", "done", "failed"]
_FIELDS = tuple(SimulationOut.model_fields)


def worker(request: Request) -> SimulationWorker:
    found: SimulationWorker | None = getattr(request.app.state, "simulations", None)
    if found is None:
        raise ProblemError(503, "detox is starting")
    return found


def _out(row: asyncpg.Record, running: SimulationWorker) -> SimulationOut:
    values = {name: row[name] for name in _FIELDS if name != "progress"}
    return SimulationOut(**values, progress=running.progress.get(row["id"]))


def _policy_problem(exc: PolicyErrors) -> ProblemError:
    return ProblemError(
        422,
        f"the policy has {len(exc)} error{'s' if len(exc) != 1 else ''}",
        title="Invalid policy",
        extensions={
            "errors": [
                {"line": e.line, "column": e.column, "message": e.message, "text": str(e)}
                for e in exc
            ]
        },
    )


@router.get(
    "/simulations/scenarios",
    response_model=list[ScenarioOut],
    summary="The packaged scenarios a simulation can run, with their detox policy",
)
async def scenarios() -> list[ScenarioOut]:
    infos = await asyncio.to_thread(lambda: [scenario_info(n) for n in packaged_scenarios()])
    return [ScenarioOut(**{f: getattr(i, f) for f in ScenarioOut.model_fields}) for i in infos]


@router.post(
    "/simulations",
    response_model=SimulationSubmitted,
    status_code=202,
    summary="What if: simulate a scenario with a changed detox policy (queued, one at a time)",
    responses={
        404: {"description": "no such scenario"},
        422: {"description": "the policy has errors (all of them, line and column)"},
    },
)
async def submit(
    body: SimulationRequest,
    who: str = Depends(user),
    rt: DetoxRuntime = Depends(runtime),
    running: SimulationWorker = Depends(worker),
) -> SimulationSubmitted:
    spec = SimulationSpec(
        scenario=body.scenario, policy=body.policy, days=body.days, seed=body.seed
    )
    try:
        prepared = await asyncio.to_thread(prepare, spec)
    except UnknownScenario as exc:
        raise ProblemError(404, str(exc)) from None
    except PolicyErrors as exc:
        raise _policy_problem(exc) from None
    except ScenarioError as exc:
        raise ProblemError(422, str(exc), title="Invalid scenario") from None
    async with rt.pool.acquire() as conn:
        run_id = await store.create(
            conn,
            scenario=body.scenario,
            days=prepared.days,
            seed=prepared.seed,
            policy=prepared.policy,
            policy_changed=body.policy is not None,
            requested_by=who,
            comment=body.comment,
            now=datetime.now(UTC),
        )
    running.wake()
    return SimulationSubmitted(
        id=run_id, status="queued", scenario=body.scenario, days=prepared.days, seed=prepared.seed
    )


@router.get(
    "/simulations",
    response_model=Page[SimulationOut],
    summary="Simulations, newest first (without their results)",
)
async def list_simulations(
    paging: Paging = Depends(),
    status: Status | None = None,
    scenario: str | None = None,
    rt: DetoxRuntime = Depends(runtime),
    running: SimulationWorker = Depends(worker),
) -> Page[SimulationOut]:
    async with rt.pool.acquire() as conn:
        rows, total = await store.list_runs(
            conn, status=status, scenario=scenario, limit=paging.limit, offset=paging.offset
        )
    return Page(
        items=[_out(r, running) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/simulations/{simulation_id}",
    response_model=SimulationDetail,
    summary="A simulation: its status, and when done the numbers and series per strategy",
)
async def get_simulation(
    simulation_id: int = Path(ge=1, le=2**63 - 1),
    rt: DetoxRuntime = Depends(runtime),
    running: SimulationWorker = Depends(worker),
) -> SimulationDetail:
    async with rt.pool.acquire() as conn:
        row = await store.get(conn, simulation_id)
    if row is None:
        raise ProblemError(404, f"no simulation {simulation_id}")
    return SimulationDetail(
        **_out(row, running).model_dump(), policy=row["policy"], result=row["result"]
    )
