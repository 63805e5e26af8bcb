"""Signing in and out: the gateway's address and a token, kept in the user's config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer
from rich.console import Console

from dynamo_common.client import render
from dynamo_common.client.api import Gateway
from dynamo_common.client.commands.base import (
    JsonOption,
    command,
    fail,
    gateway,
    group,
    out,
    print_json,
    sub_command,
)
from dynamo_common.client.config import (
    ClientConfig,
    config_path,
    load_config,
    read_config,
    save_config,
)
from dynamo_common.client.errors import ClientError, ExitCode


@command()
def login(
    url: Annotated[
        str | None, typer.Argument(help="the gateway, e.g. https://dynamo.example:8443")
    ] = None,
    token: Annotated[str | None, typer.Option(help="an API token or OIDC access token")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="read the token from this file (e.g. the admin token)")
    ] = None,
    anonymous: Annotated[bool, typer.Option(help="no token: public reads only")] = False,
) -> None:
    """Sign in: check a token with the gateway, keep both in ~/.config/dynamo/config.toml.

    The file is readable by you only. Without --token or --token-file, the token is asked for.

    DYNAMO_GATEWAY_URL and DYNAMO_TOKEN override the file (for scripts)."""
    try:
        stored = read_config()
        target = (url or stored.url).rstrip("/")
        if not target:
            raise ClientError("which gateway?", ExitCode.USAGE, hint="dynamo login URL")
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ClientError(f"cannot read {token_file}: {exc}", ExitCode.USAGE) from None
        if anonymous:
            token = ""
        elif token is None:
            token = typer.prompt("Token", hide_input=True).strip()
        config = ClientConfig(url=target, token=token)
        with Gateway(config) as api:
            me = api.get("/api/v1/auth/whoami")
        path = save_config(config)
    except ClientError as exc:
        fail(exc)
    who = "anonymously" if not token else f"as {me['name']} (role {me['role']})"
    Console(stderr=True, highlight=False).print(
        f"Signed in to {target} {who}; settings in {path}", soft_wrap=True
    )


@command()
def logout() -> None:
    """Forget the token (the gateway's address is kept)."""
    try:
        stored = read_config()
        if stored.token:
            save_config(ClientConfig(url=stored.url, token=""))
    except ClientError as exc:
        fail(exc)
    Console(stderr=True, highlight=False).print(f"Signed out ({config_path()})", soft_wrap=True)


@command()
def whoami(json_out: JsonOption = False) -> None:
    """Who the gateway thinks you are."""
    with gateway() as api:
        me = api.get("/api/v1/auth/whoami")
    if json_out:
        print_json(me)
        return
    detail = f" — {me['detail']}" if me.get("detail") else ""
    typer.echo(f"{me['name']} (role {me['role']}, signed in by {me['method']}){detail}")
    typer.echo(f"gateway: {load_config().url}")


# --------------------------------------------------------------------------- API tokens

tokens_app = group("tokens", "Your API tokens (for scripts and services).")


@sub_command(tokens_app, "list")
def list_tokens(json_out: JsonOption = False) -> None:
    """Your API tokens (their ids and descriptions; never the tokens themselves)."""
    with gateway() as api:
        data = api.get("/api/v1/auth/tokens")
    if json_out:
        print_json(data)
        return
    render.table(
        out(),
        None,
        ["id", "description", "created", "expires"],
        [
            [
                t["id"],
                t.get("description") or None,
                render.when(t["created"]),
                render.when(t.get("expires")),
            ]
            for t in data
        ],
    )


@sub_command(tokens_app, "create")
def create_token(
    description: Annotated[str, typer.Option(help="what it is for")] = "",
    expires_in_days: Annotated[
        float | None, typer.Option(min=0.001, max=3660, help="default: it does not expire")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """A new API token for your account; printed once, never shown again."""
    with gateway() as api:
        data = api.post(
            "/api/v1/auth/tokens",
            {"description": description, "expires_in_days": expires_in_days},
        )
    if json_out:
        print_json(data)
        return
    # The token alone on stdout (`TOKEN=$(dynamo tokens create)`); the rest on stderr.
    typer.echo(data["token"])
    expires = render.when(data.get("expires")) if data.get("expires") else "never"
    Console(stderr=True, highlight=False).print(
        f"token {data['id']} for {data['account']}, expires {expires}: keep it now, it is not "
        "shown again",
        soft_wrap=True,
    )


@sub_command(tokens_app, "revoke")
def revoke_token(token_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Revoke one of your API tokens (admins: anyone's)."""
    with gateway() as api:
        api.delete(f"/api/v1/auth/tokens/{quote(token_id, safe='')}")
    typer.echo(f"token {token_id} revoked")
