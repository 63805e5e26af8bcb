"""All SQL of the gateway: accounts, API tokens, certificate DNs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

S = "gateway"


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: int
    name: str
    role: str
    description: str
    disabled: bool
    created: datetime


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    account_id: int
    account: str
    role: str
    disabled: bool
    hash: str
    description: str
    created: datetime
    expires: datetime | None


_ACCOUNT_COLUMNS = "id, name, role, description, disabled, created"


def _account(r: asyncpg.Record) -> AccountRow:
    return AccountRow(
        id=r["id"],
        name=r["name"],
        role=r["role"],
        description=r["description"],
        disabled=r["disabled"],
        created=r["created"],
    )


def _token(r: asyncpg.Record) -> TokenRow:
    return TokenRow(
        id=r["id"],
        account_id=r["account_id"],
        account=r["account"],
        role=r["role"],
        disabled=r["disabled"],
        hash=r["hash"],
        description=r["description"],
        created=r["created"],
        expires=r["expires"],
    )


async def create_account(
    conn: asyncpg.Connection, name: str, role: str, description: str
) -> AccountRow | None:
    """The new account, or None when the name is taken."""
    row = await conn.fetchrow(
        f"INSERT INTO {S}.accounts (name, role, description) VALUES ($1, $2, $3)"
        f" ON CONFLICT (name) DO NOTHING RETURNING {_ACCOUNT_COLUMNS}",
        name,
        role,
        description,
    )
    return _account(row) if row else None


async def ensure_account(conn: asyncpg.Connection, name: str, role: str) -> AccountRow:
    """The account of that name, created with ``role`` when missing (its role is kept when it
    exists: an operator may have changed it)."""
    await conn.execute(
        f"INSERT INTO {S}.accounts (name, role) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name,
        role,
    )
    account = await get_account(conn, name)
    assert account is not None
    return account


async def get_account(conn: asyncpg.Connection, name: str) -> AccountRow | None:
    row = await conn.fetchrow(f"SELECT {_ACCOUNT_COLUMNS} FROM {S}.accounts WHERE name = $1", name)
    return _account(row) if row else None


async def list_accounts(
    conn: asyncpg.Connection, limit: int, offset: int
) -> tuple[int, list[AccountRow]]:
    total = int(await conn.fetchval(f"SELECT count(*) FROM {S}.accounts"))
    rows = await conn.fetch(
        f"SELECT {_ACCOUNT_COLUMNS} FROM {S}.accounts ORDER BY name LIMIT $1 OFFSET $2",
        limit,
        offset,
    )
    return total, [_account(r) for r in rows]


async def update_account(
    conn: asyncpg.Connection,
    name: str,
    *,
    role: str | None,
    disabled: bool | None,
    description: str | None,
) -> AccountRow | None:
    row = await conn.fetchrow(
        f"UPDATE {S}.accounts SET role = coalesce($2, role),"
        f" disabled = coalesce($3, disabled), description = coalesce($4, description)"
        f" WHERE name = $1 RETURNING {_ACCOUNT_COLUMNS}",
        name,
        role,
        disabled,
        description,
    )
    return _account(row) if row else None


_TOKEN_SELECT = (
    f"SELECT t.id, t.account_id, a.name AS account, a.role, a.disabled, t.hash,"
    f" t.description, t.created, t.expires"
    f" FROM {S}.tokens t JOIN {S}.accounts a ON a.id = t.account_id"
)


async def add_token(
    conn: asyncpg.Connection,
    account_id: int,
    key_id: str,
    hashed: str,
    description: str,
    expires: datetime | None,
) -> TokenRow:
    await conn.execute(
        f"INSERT INTO {S}.tokens (id, account_id, hash, description, expires)"
        f" VALUES ($1, $2, $3, $4, $5)",
        key_id,
        account_id,
        hashed,
        description,
        expires,
    )
    token = await get_token(conn, key_id)
    assert token is not None
    return token


async def get_token(conn: asyncpg.Connection, key_id: str) -> TokenRow | None:
    row = await conn.fetchrow(f"{_TOKEN_SELECT} WHERE t.id = $1", key_id)
    return _token(row) if row else None


async def tokens_of(conn: asyncpg.Connection, account_id: int) -> list[TokenRow]:
    rows = await conn.fetch(
        f"{_TOKEN_SELECT} WHERE t.account_id = $1 ORDER BY t.created, t.id", account_id
    )
    return [_token(r) for r in rows]


async def delete_token(conn: asyncpg.Connection, key_id: str) -> None:
    await conn.execute(f"DELETE FROM {S}.tokens WHERE id = $1", key_id)


async def add_dns(conn: asyncpg.Connection, account_id: int, dns: list[str]) -> list[str]:
    """Map ``dns`` to the account; returns the DNs already mapped to another account (those
    are left alone)."""
    taken: list[str] = []
    async with conn.transaction():
        for dn in dns:
            owner = await conn.fetchval(
                f"INSERT INTO {S}.account_dns (dn, account_id) VALUES ($1, $2)"
                f" ON CONFLICT (dn) DO UPDATE SET dn = EXCLUDED.dn RETURNING account_id",
                dn,
                account_id,
            )
            if owner != account_id:
                taken.append(dn)
    return taken


async def remove_dns(conn: asyncpg.Connection, account_id: int, dns: list[str]) -> int:
    result = await conn.execute(
        f"DELETE FROM {S}.account_dns WHERE account_id = $1 AND dn = ANY($2::text[])",
        account_id,
        dns,
    )
    return int(result.split()[-1])


async def dns_of(conn: asyncpg.Connection, account_id: int) -> list[str]:
    rows = await conn.fetch(
        f"SELECT dn FROM {S}.account_dns WHERE account_id = $1 ORDER BY dn", account_id
    )
    return [r["dn"] for r in rows]


async def account_of_dn(conn: asyncpg.Connection, dn: str) -> AccountRow | None:
    row = await conn.fetchrow(
        f"SELECT a.id, a.name, a.role, a.description, a.disabled, a.created"
        f" FROM {S}.account_dns d JOIN {S}.accounts a ON a.id = d.account_id WHERE d.dn = $1",
        dn,
    )
    return _account(row) if row else None
