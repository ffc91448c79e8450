"""A product's service port: a small local HTTP interface through which a test bench drives a device that runs
in its own process (a charger's test mode, a CSMS's operator console, a load manager's API).

``ServicePort(actions)`` serves ``POST /<action>`` (and ``POST /<target>/<action>`` where the device has
several targets, such as the charge points of a CSMS) on 127.0.0.1: the JSON body names the action's
values, each action is a coroutine, and the answer is JSON: ``{"result": ...}`` with status 200, or
``{"error": "..."}`` with 400 (unknown action, bad body, missing or unexpected value) or 500 (the action
failed). ``GET /`` lists the actions. One request per connection; bodies up to ``MAX_BODY`` bytes.

``call(url, **values)`` is the client (``hil do URL key=text key:=json ...`` on the command line, the form a rig
file's ``command`` adapter uses); it raises ``ServicePortError`` with the device's own message.

Times: seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

Action = Callable[..., Awaitable[Any]]
"""An action: a coroutine function taking the request's values as keyword arguments (and ``target`` when
the path has one); what it returns must be JSON-serialisable."""
MAX_BODY = 1 << 20
"""The largest request body a service port reads [bytes]."""
HEADER_TIMEOUT_S = 10.0


class ServicePortError(RuntimeError):
    """A service port refused or failed an action, or could not be reached."""


class ServicePort:
    """Serves ``actions`` on ``host:port`` (0: a free port); ``url`` is known once started."""

    def __init__(self, actions: dict[str, Action], host: str = "127.0.0.1", port: int = 0) -> None:
        self.actions = actions
        self.host, self.port = host, port
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "ServicePort":
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._handle(reader)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            status, body = 400, {"error": f"malformed HTTP request: {exc or type(exc).__name__}"}
        data = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
        try:
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_S)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            return 400, {"error": f"malformed request line {lines[0][:80]!r}"}
        method, path = parts[0], parts[1].split("?")[0].strip("/")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            return 400, {"error": f"request body of {length} bytes; at most {MAX_BODY}"}
        raw = await asyncio.wait_for(reader.readexactly(length), HEADER_TIMEOUT_S) if length else b""
        if method == "GET" and not path:
            return 200, {"result": sorted(self.actions)}
        if method != "POST":
            return 405, {"error": f"{method} /{path}: actions are POST /<action> (GET / lists them)"}
        *target, action = path.split("/") if path else [""]
        if action not in self.actions or len(target) > 1:
            return 404, {"error": f"unknown action {path!r}; known: {', '.join(sorted(self.actions))}"}
        try:
            values = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return 400, {"error": f"{action}: the body is not JSON ({exc})"}
        if not isinstance(values, dict):
            return 400, {"error": f"{action}: the body must be a JSON object of named values"}
        if target:
            values["target"] = target[0]
        function = self.actions[action]
        try:
            inspect.signature(function).bind(**values)
        except TypeError as exc:
            return 400, {"error": f"{action}: {exc}"}
        try:
            return 200, {"result": await function(**values)}
        except Exception as exc:  # noqa: BLE001 - the device's own failure, reported to the caller
            return 500, {"error": f"{action}: {exc}"}


def call(url: str, timeout: float = 60.0, **values: Any) -> Any:
    """POST ``values`` to ``url`` (``http://host:port/<action>``) and return the action's result; raises
    ``ServicePortError`` with the device's message, or naming the address it could not reach."""
    request = urllib.request.Request(url, data=json.dumps(values).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}").get("result")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except (json.JSONDecodeError, AttributeError):
            message = exc.reason
        raise ServicePortError(f"{url}: {message} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServicePortError(f"{url}: cannot reach the service port ({reason})") from None


def parse_values(items: list[str]) -> dict[str, Any]:
    """Command-line values as httpie writes them: ``key=text`` (a string) or ``key:=json`` (a number, true,
    an object...); ``ValueError`` names the item that is neither."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.rstrip(":"):
            raise ValueError(f"{item!r}: expected key=text or key:=json")
        if key.endswith(":"):
            try:
                values[key[:-1]] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{item!r}: not JSON ({exc})") from None
        else:
            values[key] = text
    return values
