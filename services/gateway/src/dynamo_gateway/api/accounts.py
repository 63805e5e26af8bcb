"""``/api/v1/auth``: who am I, local accounts, their API tokens and certificate DNs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
from fastapi import APIRouter, Depends, Response

from dynamo_common.app import ProblemError
from dynamo_gateway.api.deps import Paging, authorize, runtime
from dynamo_gateway.repository import accounts as repo
from dynamo_gateway.runtime import GatewayRuntime
from dynamo_gateway.schemas import (
    AccountIn,
    AccountOut,
    AccountPatch,
    DnsIn,
    DnsOut,
    NewTokenOut,
    Page,
    TokenIn,
    TokenOut,
    WhoAmI,
)
from dynamo_gateway.service.dn import DnError, normalise_dn
from dynamo_gateway.service.roles import Identity, Role
from dynamo_gateway.service.tokens import new_token

# Every endpoint depends on `authorize`, which applies the permission table.
router = APIRouter(prefix="/api/v1/auth", tags=["accounts"], dependencies=[Depends(authorize)])


def _token_out(row: repo.TokenRow) -> TokenOut:
    return TokenOut(
        id=row.id,
        account=row.account,
        description=row.description,
        created=row.created,
        expires=row.expires,
    )


async def _account_out(conn: asyncpg.Connection, account: repo.AccountRow) -> AccountOut:
    return AccountOut(
        name=account.name,
        role=account.role,
        description=account.description,
        disabled=account.disabled,
        created=account.created,
        dns=await repo.dns_of(conn, account.id),
    )


async def _account(conn: asyncpg.Connection, name: str) -> repo.AccountRow:
    account = await repo.get_account(conn, name)
    if account is None:
        raise ProblemError(404, f"unknown account {name!r}")
    return account


def _own_account(identity: Identity) -> int:
    if identity.account_id is None:
        raise ProblemError(
            409,
            f"{identity.name} signed in with a {identity.method} credential that has no local "
            "account; an admin can create one",
        )
    return identity.account_id


def _dns(raw: list[str]) -> list[str]:
    try:
        return sorted({normalise_dn(dn) for dn in raw})
    except DnError as exc:
        raise ProblemError(422, str(exc)) from None


async def _issue(
    rt: GatewayRuntime, conn: asyncpg.Connection, account_id: int, body: TokenIn
) -> NewTokenOut:
    made = await asyncio.to_thread(new_token)  # scrypt takes tens of ms: off the event loop
    expires = (
        datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    )
    row = await repo.add_token(
        conn, account_id, made.key_id, made.hashed, body.description, expires
    )
    return NewTokenOut(**_token_out(row).model_dump(), token=made.token)


@router.get("/whoami", response_model=WhoAmI, summary="The identity the gateway sees")
async def whoami(
    identity: Identity = Depends(authorize), rt: GatewayRuntime = Depends(runtime)
) -> WhoAmI:
    return WhoAmI(
        name=identity.name,
        role=identity.role.label,
        roles=identity.role.granted(),
        method=identity.method,
        account=identity.name if identity.account_id is not None else None,
        detail=identity.detail,
        public_reads=rt.settings.public_reads,
    )


@router.get("/tokens", response_model=list[TokenOut], summary="Your own API tokens")
async def my_tokens(
    identity: Identity = Depends(authorize), rt: GatewayRuntime = Depends(runtime)
) -> list[TokenOut]:
    account_id = _own_account(identity)
    async with rt.pool.acquire() as conn:
        return [_token_out(t) for t in await repo.tokens_of(conn, account_id)]


@router.post(
    "/tokens", response_model=NewTokenOut, status_code=201, summary="A new API token for you"
)
async def new_my_token(
    body: TokenIn, identity: Identity = Depends(authorize), rt: GatewayRuntime = Depends(runtime)
) -> NewTokenOut:
    account_id = _own_account(identity)
    async with rt.pool.acquire() as conn:
        return await _issue(rt, conn, account_id, body)


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke an API token (your own; admins: any)",
)
async def revoke_token(
    token_id: str, identity: Identity = Depends(authorize), rt: GatewayRuntime = Depends(runtime)
) -> Response:
    async with rt.pool.acquire() as conn:
        row = await repo.get_token(conn, token_id)
        # Someone else's token is "unknown" to a non-admin: its existence is not theirs to learn.
        if row is None or (identity.role < Role.ADMIN and row.account_id != identity.account_id):
            raise ProblemError(404, f"unknown token {token_id!r}")
        await repo.delete_token(conn, token_id)
    rt.auth.forget_tokens()
    return Response(status_code=204)


@router.get("/accounts", response_model=Page[AccountOut], summary="Local accounts")
async def list_accounts(
    paging: Paging = Depends(), rt: GatewayRuntime = Depends(runtime)
) -> Page[AccountOut]:
    async with rt.pool.acquire() as conn:
        total, rows = await repo.list_accounts(conn, paging.limit, paging.offset)
        items = [await _account_out(conn, row) for row in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.post("/accounts", response_model=AccountOut, status_code=201, summary="A new account")
async def create_account(body: AccountIn, rt: GatewayRuntime = Depends(runtime)) -> AccountOut:
    dns = _dns(body.dns)
    async with rt.pool.acquire() as conn, conn.transaction():
        account = await repo.create_account(conn, body.name, body.role, body.description)
        if account is None:
            raise ProblemError(409, f"the account {body.name!r} exists")
        taken = await repo.add_dns(conn, account.id, dns)
        if taken:
            raise ProblemError(409, "DNs mapped to another account", extensions={"dns": taken})
        return await _account_out(conn, account)


@router.get("/accounts/{name}", response_model=AccountOut, summary="One account")
async def get_account(name: str, rt: GatewayRuntime = Depends(runtime)) -> AccountOut:
    async with rt.pool.acquire() as conn:
        return await _account_out(conn, await _account(conn, name))


@router.patch(
    "/accounts/{name}", response_model=AccountOut, summary="Change a role, disable an account"
)
async def patch_account(
    name: str, body: AccountPatch, rt: GatewayRuntime = Depends(runtime)
) -> AccountOut:
    async with rt.pool.acquire() as conn:
        account = await repo.update_account(
            conn, name, role=body.role, disabled=body.disabled, description=body.description
        )
        if account is None:
            raise ProblemError(404, f"unknown account {name!r}")
        out = await _account_out(conn, account)
    rt.auth.forget_tokens()  # cached identities carry the old role
    return out


@router.post(
    "/accounts/{name}/tokens",
    response_model=NewTokenOut,
    status_code=201,
    summary="A new API token for an account (service accounts)",
)
async def new_account_token(
    name: str, body: TokenIn, rt: GatewayRuntime = Depends(runtime)
) -> NewTokenOut:
    async with rt.pool.acquire() as conn:
        account = await _account(conn, name)
        return await _issue(rt, conn, account.id, body)


@router.post("/accounts/{name}/dns", response_model=DnsOut, summary="Map certificate DNs")
async def add_dns(name: str, body: DnsIn, rt: GatewayRuntime = Depends(runtime)) -> DnsOut:
    dns = _dns(body.dns)
    async with rt.pool.acquire() as conn, conn.transaction():
        account = await _account(conn, name)
        taken = await repo.add_dns(conn, account.id, dns)
        if taken:
            raise ProblemError(409, "DNs mapped to another account", extensions={"dns": taken})
        out = DnsOut(account=account.name, dns=await repo.dns_of(conn, account.id))
    rt.auth.forget_tokens()
    return out


@router.post("/accounts/{name}/dns/delete", response_model=DnsOut, summary="Unmap DNs")
async def remove_dns(name: str, body: DnsIn, rt: GatewayRuntime = Depends(runtime)) -> DnsOut:
    dns = _dns(body.dns)
    async with rt.pool.acquire() as conn:
        account = await _account(conn, name)
        await repo.remove_dns(conn, account.id, dns)
        out = DnsOut(account=account.name, dns=await repo.dns_of(conn, account.id))
    rt.auth.forget_tokens()
    return out
