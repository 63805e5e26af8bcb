"""Where the client finds the gateway and its token: ``~/.config/dynamo/config.toml``
(``$XDG_CONFIG_HOME`` and ``$DYNAMO_CONFIG`` move it), overridden by ``DYNAMO_GATEWAY_URL``
and ``DYNAMO_TOKEN``. The file holds a credential, so it is written readable by its owner
only, and replaced atomically."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dynamo_common.client.errors import ClientError, ExitCode


@dataclass(frozen=True, slots=True)
class ClientConfig:
    url: str = ""
    token: str = ""


def config_path() -> Path:
    explicit = os.environ.get("DYNAMO_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dynamo" / "config.toml"


def read_config(path: Path | None = None) -> ClientConfig:
    """The stored configuration (empty when there is none)."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ClientConfig()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(
            f"cannot read {path}: {exc}", ExitCode.USAGE, hint="fix or remove the file"
        ) from None
    url, token = data.get("url", ""), data.get("token", "")
    return ClientConfig(
        url=url if isinstance(url, str) else "", token=token if isinstance(token, str) else ""
    )


def load_config() -> ClientConfig:
    """The stored configuration with the environment's overrides applied."""
    stored = read_config()
    return ClientConfig(
        url=(os.environ.get("DYNAMO_GATEWAY_URL") or stored.url).rstrip("/"),
        token=os.environ.get("DYNAMO_TOKEN", stored.token),
    )


def _toml_string(value: str) -> str:
    # JSON string escapes (\" \\ \n \uXXXX) are valid in TOML basic strings.
    return json.dumps(value)


def save_config(config: ClientConfig, path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = (
        "# Written by `dynamo login`: the gateway and your token for it.\n"
        f"url = {_toml_string(config.url)}\n"
        f"token = {_toml_string(config.token)}\n"
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start: the token is never readable by others, not even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o600)  # O_CREAT's mode does not apply to a file that existed
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
