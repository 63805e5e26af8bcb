"""Write endpoints. Each sends the command another service would send on the bus and waits
for the reply, so REST and bus requests share one path and one validation. An
``Idempotency-Key`` header becomes the command id: retrying a request whose answer was lost
cannot queue it twice."""

# No `from __future__ import annotations`: FastAPI must see the real body type of each
# endpoint built in `_endpoint`, not the string "model".

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel

from dynamo_common.app import ProblemError
from dynamo_common.bus.base import RequestTimeout
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.envelope import Envelope, new_id
from dynamo_common.messages.registry import TransferCommand as C
from dynamo_transfer.api.deps import runtime
from dynamo_transfer.inventory import SOURCE
from dynamo_transfer.runtime import TransferRuntime

router = APIRouter(prefix="/api/v1/transfers", tags=["transfer requests"])

_REJECTED: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "The request was refused; nothing was queued.",
        "content": {"application/problem+json": {}},
    }
}


async def send_command(
    rt: TransferRuntime, command_type: str, body: BaseModel, idempotency_key: str | None
) -> tr.TransferCommandReply:
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
            "the transfer service did not answer in time; retry with the same Idempotency-Key",
            extensions={"command_id": envelope.id},
        ) from None
    return tr.TransferCommandReply.model_validate(reply.data)


def _endpoint(
    command_type: str, model: type[BaseModel]
) -> Callable[..., Awaitable[tr.TransferCommandReply]]:
    async def endpoint(
        body: model,  # type: ignore[valid-type]
        idempotency_key: str | None = Header(None, max_length=128),
        rt: TransferRuntime = Depends(runtime),
    ) -> tr.TransferCommandReply:
        reply = await send_command(rt, command_type, body, idempotency_key)
        if reply.status == "rejected":
            raise ProblemError(
                422,
                reply.reason,
                title="Request refused",
                extensions={"command_id": reply.command_id},
            )
        return reply

    return endpoint


_ROUTES: list[tuple[str, str, type[BaseModel], str]] = [
    ("/requests", C.TRANSFER_REPLICAS, tr.TransferReplicas, "Copy dataset or block replicas"),
    ("/deletions", C.DELETE_REPLICAS, tr.DeleteReplicaFiles, "Delete dataset or block replicas"),
    ("/requests/files", C.TRANSFER_FILES, tr.TransferFiles, "Copy single registered files"),
    ("/deletions/files", C.DELETE_FILES, tr.DeleteFiles, "Delete single files from storage"),
]

for _path, _type, _model, _summary in _ROUTES:
    router.add_api_route(
        _path,
        _endpoint(_type, _model),
        methods=["POST"],
        response_model=tr.TransferCommandReply,
        summary=_summary,
        description=f"Sends the `{_type}` command.",
        responses=_REJECTED,
        name=_type,
    )
