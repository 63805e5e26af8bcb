"""The client's HTTP side: one httpx client for the gateway, and every failure turned into a
message a person can act on and an exit code a script can test."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from dynamo_common.client.config import ClientConfig
from dynamo_common.client.errors import ClientError, ExitCode

USER_AGENT = "dynamo-cli/0.1"
Params = Mapping[str, str | int | float | bool | None]


def _problem(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The detail of a problem document (or whatever text the answer had)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:300] or response.reason_phrase), {}
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or response.reason_phrase
        return str(detail), body
    return response.reason_phrase, {}


def _error_line(error: Any) -> str:
    """One entry of a problem's ``errors``: a request validation error (parameter or pointer,
    msg) or a policy error (its own FILE:LINE:COL text)."""
    if not isinstance(error, dict):
        return str(error)
    if isinstance(error.get("text"), str):
        return str(error["text"])
    where = error.get("parameter") or error.get("pointer") or ""
    return f"{where}: {error.get('msg', error.get('message', error))}"


class Gateway:
    def __init__(
        self,
        config: ClientConfig,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not config.url:
            raise ClientError(
                "no gateway configured",
                ExitCode.USAGE,
                hint="sign in with `dynamo login URL`, or set DYNAMO_GATEWAY_URL",
            )
        self.url = config.url
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._signed_in = bool(config.token)
        self._client = httpx.Client(
            base_url=config.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get(self, path: str, params: Params | None = None) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        return self._json(self._send("GET", path, params=clean))

    def post(self, path: str, body: Any) -> Any:
        return self._json(self._send("POST", path, json=body))

    def put(self, path: str, body: Any) -> Any:
        return self._json(self._send("PUT", path, json=body))

    def patch(self, path: str, body: Any) -> Any:
        return self._json(self._send("PATCH", path, json=body))

    def delete(self, path: str) -> Any:
        return self._json(self._send("DELETE", path))

    def pages(self, path: str, params: Params, *, limit: int, everything: bool) -> Iterator[Any]:
        """The pages of a list endpoint: the first only, or all of them with ``everything``."""
        offset = int(params.get("offset") or 0)
        while True:
            page = self.get(path, {**params, "limit": limit, "offset": offset})
            yield page
            offset += len(page.get("items", []))
            if not everything or not page.get("items") or offset >= page.get("total", 0):
                return

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ClientError(
                f"cannot reach the gateway at {self.url} ({exc})",
                ExitCode.UNREACHABLE,
                hint="is it running? `dynamo login URL` changes the address",
            ) from None
        except httpx.TimeoutException:
            raise ClientError(
                f"the gateway at {self.url} did not answer in time", ExitCode.UNREACHABLE
            ) from None
        except httpx.HTTPError as exc:
            raise ClientError(
                f"talking to the gateway at {self.url} failed: {exc}", ExitCode.UNREACHABLE
            ) from None
        if response.is_success:
            return response
        raise self._failure(method, path, response)

    def _failure(self, method: str, path: str, response: httpx.Response) -> ClientError:
        detail, body = _problem(response)
        status = response.status_code
        if status == 401:
            if self._signed_in:
                return ClientError(
                    f"the gateway refused your credentials: {detail}",
                    ExitCode.AUTH,
                    hint="sign in again with `dynamo login`",
                )
            return ClientError(
                f"not signed in: {detail}", ExitCode.AUTH, hint="sign in with `dynamo login`"
            )
        if status == 403:
            role = body.get("required_role")
            hint = f"this needs the {role} role: ask an admin" if isinstance(role, str) else None
            return ClientError(f"forbidden: {detail}", ExitCode.AUTH, hint=hint)
        if status in (404, 410):
            return ClientError(f"not found: {detail}", ExitCode.NOT_FOUND)
        if status in (502, 503, 504):
            return ClientError(detail, ExitCode.UNREACHABLE, hint="try again later")
        if status in (400, 409, 413, 422):
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                detail += "".join(f"\n  {_error_line(e)}" for e in errors)
            return ClientError(detail, ExitCode.USAGE)
        return ClientError(f"{method} {path} failed ({status}): {detail}", ExitCode.USAGE)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"the gateway answered {response.request.url.path} with something that is not JSON",
                ExitCode.USAGE,
            ) from None
