"""Write endpoints. Each one sends the very command a service would send on the bus and waits
for the single writer's reply, so REST and bus writes share one path, one validation and one
ordering. An ``Idempotency-Key`` header becomes the command id: retrying a request whose
answer was lost cannot apply it twice."""

# No `from __future__ import annotations`: FastAPI must see the real body type of each
# endpoint built in `_endpoint`, not the string "model".

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dynamo_common.app import ProblemError
from dynamo_common.bus.base import RequestTimeout
from dynamo_common.messages import inventory as inv
from dynamo_common.messages.envelope import Envelope, new_id
from dynamo_common.messages.registry import InventoryCommand as C
from dynamo_inventory.api.deps import runtime
from dynamo_inventory.runtime import SOURCE, InventoryRuntime

router = APIRouter(prefix="/api/v1", tags=["inventory commands"])

_REJECTED: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "The command was rejected; nothing changed.",
        "content": {"application/problem+json": {}},
    }
}


async def send_command(
    rt: InventoryRuntime, command_type: str, body: BaseModel, idempotency_key: str | None
) -> inv.CommandReply:
    envelope = Envelope(
        id=idempotency_key or new_id(),
        type=command_type,
        source=SOURCE,
        data=body.model_dump(mode="json"),
    )
    try:
        reply = await rt.bus.request(envelope, timeout=rt.settings.command_reply_timeout)
    except RequestTimeout:
        raise ProblemError(
            504,
            "the inventory writer did not answer in time; retry with the same Idempotency-Key",
            extensions={"command_id": envelope.id},
        ) from None
    return inv.CommandReply.model_validate(reply.data)


def _endpoint(
    command_type: str, model: type[BaseModel]
) -> Callable[..., Awaitable[inv.CommandReply | JSONResponse]]:
    async def endpoint(
        request: Request,
        body: model,  # type: ignore[valid-type]
        idempotency_key: str | None = Header(None, max_length=128),
        rt: InventoryRuntime = Depends(runtime),
    ) -> inv.CommandReply | JSONResponse:
        reply = await send_command(rt, command_type, body, idempotency_key)
        if reply.status == "rejected":
            raise ProblemError(
                422,
                reply.reason,
                title="Command rejected",
                extensions={
                    "command_id": reply.command_id,
                    "errors": [e.model_dump() for e in reply.errors],
                },
            )
        return reply

    return endpoint


_ROUTES: list[tuple[str, str, str, type[BaseModel], str]] = [
    ("POST", "/sites", C.UPSERT_SITES, inv.UpsertSites, "Register or update sites"),
    ("POST", "/groups", C.UPSERT_GROUPS, inv.UpsertGroups, "Register or update groups"),
    ("POST", "/datasets", C.UPSERT_DATASETS, inv.UpsertDatasets, "Register or update datasets"),
    (
        "POST",
        "/datasets/delete",
        C.DELETE_DATASETS,
        inv.DeleteDatasets,
        "Delete datasets without replicas",
    ),
    ("POST", "/blocks", C.UPSERT_BLOCKS, inv.UpsertBlocks, "Register, update or close blocks"),
    ("POST", "/files", C.ADD_FILES, inv.AddFiles, "Register files in open blocks"),
    ("POST", "/files/remove", C.REMOVE_FILES, inv.RemoveFiles, "Remove files from open blocks"),
    (
        "POST",
        "/replicas",
        C.CREATE_REPLICAS,
        inv.CreateReplicas,
        "Create dataset and block replicas",
    ),
    (
        "PATCH",
        "/replicas",
        C.UPDATE_REPLICAS,
        inv.UpdateReplicas,
        "Grow, complete or change the owner of replicas",
    ),
    ("POST", "/replicas/delete", C.DELETE_REPLICAS, inv.DeleteReplicas, "Delete replicas"),
    (
        "POST",
        "/containers",
        C.UPSERT_CONTAINERS,
        inv.UpsertContainers,
        "Register or update containers",
    ),
    ("POST", "/containers/delete", C.DELETE_CONTAINERS, inv.DeleteContainers, "Delete containers"),
    ("POST", "/partitions", C.UPSERT_PARTITIONS, inv.UpsertPartitions, "Define partitions"),
    ("POST", "/partitions/delete", C.DELETE_PARTITIONS, inv.DeletePartitions, "Delete partitions"),
]

for _method, _path, _type, _model, _summary in _ROUTES:
    router.add_api_route(
        _path,
        _endpoint(_type, _model),
        methods=[_method],
        response_model=inv.CommandReply,
        summary=_summary,
        description=f"Sends the `{_type}` command.",
        responses=_REJECTED,
        name=_type,
    )
