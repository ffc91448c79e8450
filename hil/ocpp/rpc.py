"""OCPP-J remote procedure calls over one WebSocket: framing, validation, error codes, the message trace.

Both sides of evhil (the CSMS harness and the charge point emulator) use ``Connection``. It replaces the
routing of the ``ocpp`` library's ``ChargePoint`` because a conformance tool needs what that class hides or
gets wrong (see ../shared reference "ocpp library pitfalls"):

- every frame is recorded raw with a timestamp, including late replies and frames that do not parse;
- an incoming CALL is handled in its own task, so a handler may await a CALL of its own without
  deadlocking the receive loop;
- a handler may answer with any CALLERROR, or deliberately not answer (``NO_REPLY``) to test timeouts;
- malformed frames get the CALLERROR OCPP-J prescribes instead of being dropped: 1.6 ``FormationViolation``
  / 2.0.1 ``RpcFrameworkError`` or ``FormatViolation``; an unknown action is ``NotImplemented`` and a known
  action without a handler ``NotSupported`` (the library swaps the two);
- schemas are compiled once (``hil.ocpp.schemas``), and validation can be switched off per connection.

Payloads are plain dicts in OCPP-J camelCase, exactly as on the wire. Times: seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hil.ocpp.schemas import SchemaViolation, Version, actions, error_code
from hil.ocpp.schemas import validate as check_schema

log = logging.getLogger(__name__)

CALL, CALLRESULT, CALLERROR = 2, 3, 4
SUBPROTOCOLS: dict[str, str] = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
"""WebSocket subprotocol of each OCPP version."""
VERSION_OF_SUBPROTOCOL = {v: k for k, v in SUBPROTOCOLS.items()}

Direction = Literal["sent", "received"]


class NoReply:
    """Returned by a handler that deliberately leaves a CALL unanswered."""

    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY = NoReply()


class CallError(Exception):
    """A CALLERROR: raised by a handler to send one, and by ``Connection.call`` when one arrives."""

    def __init__(self, code: str, description: str = "", details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.details = dict(details or {})


class CallTimeout(TimeoutError):
    """No CALLRESULT or CALLERROR arrived within the response timeout."""


class ConnectionClosed(ConnectionError):
    """The WebSocket closed while a CALL was in flight or before it could be sent."""


@dataclass(frozen=True)
class Frame:
    """One OCPP-J message as it crossed the wire.

    ``time`` is wall-clock seconds since the epoch; ``action`` is the CALL's action, and for a
    CALLRESULT or CALLERROR the action of the CALL it answers (``None`` if unknown). ``payload`` is the
    CALL or CALLRESULT payload, or for a CALLERROR ``{"errorCode", "errorDescription", "errorDetails"}``.
    ``problem`` describes why a received frame could not be parsed (then ``message_type`` is 0).
    """

    time: float
    direction: Direction
    raw: str
    message_type: int
    unique_id: str
    action: str | None
    payload: dict[str, Any]
    problem: str | None = None

    @property
    def is_call(self) -> bool:
        return self.message_type == CALL

    def to_json(self) -> dict[str, Any]:
        """A JSON-lines record of this frame (for trace attachments)."""
        return {"time": self.time, "direction": self.direction, "type": self.message_type,
                "id": self.unique_id, "action": self.action, "payload": self.payload, "problem": self.problem,
                "raw": self.raw if self.problem else None}


class Trace:
    """Every frame of one charge point's connections, in order; listeners see each frame as it arrives."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._listeners: list[Callable[[Frame], None]] = []

    def add(self, frame: Frame) -> None:
        self.frames.append(frame)
        for listener in list(self._listeners):
            listener(frame)

    def listen(self, listener: Callable[[Frame], None]) -> Callable[[], None]:
        """Call ``listener`` for every new frame; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def calls(self, action: str | None = None, direction: Direction = "received") -> list[Frame]:
        """CALL frames in ``direction``, optionally of one action."""
        return [f for f in self.frames if f.is_call and f.direction == direction
                and (action is None or f.action == action)]

    def jsonl(self) -> str:
        """The trace as JSON lines."""
        return "".join(json.dumps(f.to_json(), separators=(",", ":")) + "\n" for f in self.frames)


class WebSocketLike(Protocol):
    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


async def bounded(awaitable: Awaitable[Any], seconds: float) -> bool:
    """Wait at most ``seconds`` for ``awaitable`` without waiting for it to acknowledge a cancellation
    (``asyncio.wait_for`` does, and hangs if the awaitable swallows it). True if it finished in time."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        return False
    if not task.cancelled() and task.exception() is not None:
        log.debug("bounded wait ended with %r", task.exception())
    return True


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | NoReply]]
"""Answers a CALL's payload with a CALLRESULT payload, ``NO_REPLY``, or by raising ``CallError``."""


@dataclass
class _Pending:
    action: str
    future: asyncio.Future[dict[str, Any]]


@dataclass
class Connection:
    """One OCPP-J connection. ``run()`` reads frames until the socket closes; ``call()`` sends a CALL.

    ``handlers`` maps actions to ``Handler`` coroutines; ``validate`` checks every payload against its
    schema both ways (violations received are answered with the matching CALLERROR and recorded in
    ``findings``; violations about to be sent raise ``SchemaViolation`` before the wire).
    """

    ws: WebSocketLike
    version: Version
    handlers: dict[str, Handler] = field(default_factory=dict)
    trace: Trace = field(default_factory=Trace)
    validate: bool = True
    response_timeout: float = 30.0
    name: str = "ocpp"
    findings: list[str] = field(default_factory=list)
    """Protocol violations by the other side, in words."""

    def __post_init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._call_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._ids = (f"{uuid.uuid4().hex[:8]}-{n}" for n in itertools.count(1))

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- receiving ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Read and dispatch frames until the socket closes; then fail the CALLs still in flight."""
        try:
            while True:
                try:
                    message = await self.ws.recv()
                except Exception as exc:  # noqa: BLE001 - any transport end closes the connection
                    log.debug("%s: connection ended: %s", self.name, exc)
                    break
                text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
                await self._dispatch(text)
        finally:
            self._closed.set()
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(ConnectionClosed(f"{self.name}: closed during {pending.action}"))
            self._pending.clear()
            for task in list(self._tasks):
                task.cancel()

    def _record(self, direction: Direction, raw: str, mtype: int, uid: str, action: str | None,
                payload: dict[str, Any], problem: str | None = None) -> Frame:
        frame = Frame(time.time(), direction, raw, mtype, uid, action, payload, problem)
        self.trace.add(frame)
        return frame

    async def _dispatch(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = None
        if not isinstance(msg, list) or len(msg) < 3 or not isinstance(msg[0], int):
            problem = "not an OCPP-J message array"
            self._record("received", raw, 0, "", None, {}, problem)
            self.findings.append(f"received a frame that is not an OCPP-J message: {raw[:120]!r}")
            uid = msg[1] if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str) else "-1"
            code = "FormationViolation" if self.version == "1.6" else "RpcFrameworkError"
            await self._send_error(uid, None, code, problem)
            return
        mtype, uid = msg[0], msg[1]
        if not isinstance(uid, str):
            self._record("received", raw, 0, "", None, {}, "message id is not a string")
            self.findings.append(f"received a message whose id is not a string: {raw[:120]!r}")
            code = "FormationViolation" if self.version == "1.6" else "RpcFrameworkError"
            await self._send_error("-1", None, code, "message id is not a string")
            return
        if mtype == CALL:
            await self._on_call(raw, msg)
        elif mtype == CALLRESULT:
            self._on_result(raw, msg)
        elif mtype == CALLERROR:
            self._on_error(raw, msg)
        else:
            self._record("received", raw, 0, uid, None, {}, f"unknown message type {mtype}")
            self.findings.append(f"received unknown message type {mtype}")
            code = "ProtocolError" if self.version == "1.6" else "MessageTypeNotSupported"
            await self._send_error(uid, None, code, f"message type {mtype} is not defined")

    async def _on_call(self, raw: str, msg: list[Any]) -> None:
        uid = msg[1]
        if len(msg) != 4 or not isinstance(msg[2], str) or not isinstance(msg[3], dict):
            self._record("received", raw, 0, uid, None, {}, "CALL must be [2, id, action, {payload}]")
            self.findings.append(f"malformed CALL {raw[:120]!r}")
            code = "FormationViolation" if self.version == "1.6" else "FormatViolation"
            await self._send_error(uid, None, code, "a CALL is [2, messageId, action, payload object]")
            return
        action, payload = msg[2], msg[3]
        self._record("received", raw, CALL, uid, action, payload)
        if action not in actions(self.version):
            self.findings.append(f"sent {action}, which is not an OCPP {self.version} action")
            await self._send_error(uid, action, "NotImplemented", f"{action} is not an OCPP {self.version} action")
            return
        handler = self.handlers.get(action)
        if handler is None:
            self.findings.append(f"sent {action}, which this side does not support")
            await self._send_error(uid, action, "NotSupported", f"{action} is not supported here")
            return
        if self.validate:
            try:
                check_schema(self.version, action, "request", payload)
            except SchemaViolation as exc:
                self.findings.append(f"{action} request violates its schema: {exc.detail}")
                await self._send_error(uid, action, error_code(self.version, exc), exc.detail)
                return
        task = asyncio.ensure_future(self._answer(uid, action, handler, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, uid: str, action: str, handler: Handler, payload: dict[str, Any]) -> None:
        try:
            result = await handler(payload)
        except CallError as exc:
            await self._send_error(uid, action, exc.code, exc.description, exc.details)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a handler bug must not end the connection
            log.exception("%s: handler for %s failed", self.name, action)
            await self._send_error(uid, action, "InternalError", f"{type(exc).__name__}: {exc}")
            return
        if isinstance(result, NoReply):
            return
        if self.validate:
            check_schema(self.version, action, "response", result)
        await self._send(json.dumps([CALLRESULT, uid, result], separators=(",", ":")), CALLRESULT, uid, action, result)

    def _on_result(self, raw: str, msg: list[Any]) -> None:
        uid, payload = msg[1], msg[2]
        if payload is None:  # OCPP-J 1.6 and 2.0.1 §4.2.2: a result without payload may be written null or {}
            payload = {}
        pending = self._pending.pop(uid, None)
        action = pending.action if pending else None
        self._record("received", raw, CALLRESULT, uid, action, payload if isinstance(payload, dict) else {})
        if pending is None:
            self.findings.append(f"CALLRESULT for unknown or expired message id {uid!r}")
            return
        if not isinstance(payload, dict):
            pending.future.set_exception(CallError("FormationViolation" if self.version == "1.6" else "FormatViolation",
                                                   f"{pending.action} result payload is not an object"))
            return
        if self.validate:
            try:
                check_schema(self.version, pending.action, "response", payload)
            except SchemaViolation as exc:
                self.findings.append(f"{pending.action} response violates its schema: {exc.detail}")
                if not pending.future.done():
                    pending.future.set_exception(exc)
                return
        if not pending.future.done():
            pending.future.set_result(payload)

    def _on_error(self, raw: str, msg: list[Any]) -> None:
        uid = msg[1]
        code = msg[2] if len(msg) > 2 and isinstance(msg[2], str) else "GenericError"
        description = msg[3] if len(msg) > 3 and isinstance(msg[3], str) else ""
        details = msg[4] if len(msg) > 4 and isinstance(msg[4], dict) else {}
        pending = self._pending.pop(uid, None)
        self._record("received", raw, CALLERROR, uid, pending.action if pending else None,
                     {"errorCode": code, "errorDescription": description, "errorDetails": details})
        if pending is None:
            self.findings.append(f"CALLERROR for unknown or expired message id {uid!r}")
        elif not pending.future.done():
            pending.future.set_exception(CallError(code, description, details))

    # -- sending --------------------------------------------------------------------------------------
    async def _send(self, raw: str, mtype: int, uid: str, action: str | None, payload: dict[str, Any]) -> None:
        try:
            await self.ws.send(raw)
        except Exception as exc:  # noqa: BLE001
            raise ConnectionClosed(f"{self.name}: cannot send {action or 'frame'}: {exc}") from exc
        self._record("sent", raw, mtype, uid, action, payload)

    async def _send_error(self, uid: str, action: str | None, code: str, description: str = "",
                          details: Mapping[str, Any] | None = None) -> None:
        payload = {"errorCode": code, "errorDescription": description[:255], "errorDetails": dict(details or {})}
        raw = json.dumps([CALLERROR, uid, code, payload["errorDescription"], payload["errorDetails"]],
                         separators=(",", ":"))
        try:
            await self._send(raw, CALLERROR, uid, action, payload)
        except ConnectionClosed:
            log.debug("%s: could not send CALLERROR %s", self.name, code)

    async def call(self, action: str, payload: Mapping[str, Any], timeout: float | None = None,
                   validate: bool | None = None) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload.

        One CALL is in flight at a time (OCPP-J). Raises ``CallError`` on a CALLERROR, ``CallTimeout``
        after ``timeout`` (default ``response_timeout``) s, ``ConnectionClosed`` if the socket goes,
        ``SchemaViolation`` if ``payload`` (or, with validation on, the answer) breaks its schema.
        """
        body = dict(payload)
        if self.validate if validate is None else validate:
            check_schema(self.version, action, "request", body)
        async with self._call_lock:
            if self.closed:
                raise ConnectionClosed(f"{self.name}: not connected; {action} not sent")
            uid = next(self._ids)
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[uid] = _Pending(action, future)
            await self._send(json.dumps([CALL, uid, action, body], separators=(",", ":")), CALL, uid, action, body)
            try:
                return await asyncio.wait_for(future, timeout if timeout is not None else self.response_timeout)
            except asyncio.TimeoutError:
                self._pending.pop(uid, None)
                raise CallTimeout(f"{self.name}: no answer to {action} within "
                                  f"{timeout if timeout is not None else self.response_timeout:g} s") from None

    async def send_raw(self, text: str) -> None:
        """Send ``text`` as is (to test how the other side handles malformed frames)."""
        await self._send(text, 0, "", None, {})

    async def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> None:
        """Close the WebSocket (the other side sees a clean close); after ``timeout`` s the transport is
        aborted instead."""
        if not await bounded(self.ws.close(code, reason), timeout):
            abort = getattr(getattr(self.ws, "transport", None), "abort", None)
            if abort is not None:
                abort()
