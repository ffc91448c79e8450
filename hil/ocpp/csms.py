"""The CSMS harness: evhil acting as the central system for charge points under test.

``CSMS`` listens for OCPP-J WebSocket connections (127.0.0.1 by default), negotiates OCPP 1.6 or 2.0.1 by
subprotocol, checks HTTP basic auth (security profile 1) and serves TLS (profile 2) when asked. Each charge
point gets a ``Session``: its connections over time, the trace of every frame, the answers the CSMS gives
(sensible defaults, overridable per test, including no answer or a CALLERROR), and expectations with
strict or lenient matching, timeouts and forbidden actions. Fault injection: drop a connection, refuse
reconnects for a while.

Times: seconds. Payloads: OCPP-J camelCase dicts.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from hil.ocpp.conformance import ConformanceFailure, matches, show
from hil.ocpp.rpc import (
    NO_REPLY, SUBPROTOCOLS, VERSION_OF_SUBPROTOCOL, CallError, Connection, Frame, Handler, NoReply, Trace, bounded,
)
from hil.ocpp.schemas import Version

log = logging.getLogger(__name__)

Answer = Mapping[str, Any] | Callable[[dict[str, Any]], Any] | NoReply | CallError
"""A scripted answer: a payload, a function of the request payload, ``NO_REPLY`` or a ``CallError``."""

VALID_TOKEN = "EVHILVALID01"
INVALID_TOKEN = "EVHILINVALID"
BLOCKED_TOKEN = "EVHILBLOCKED"
EXPIRED_TOKEN = "EVHILEXPIRED"


def now_iso() -> str:
    """The current UTC time as OCPP writes it (RFC 3339, milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def boot_answer(status: str, interval: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A scripted BootNotification answer (``status`` Accepted, Pending or Rejected; ``interval`` [s])."""
    return lambda payload: {"status": status, "currentTime": now_iso(), "interval": interval}


class Session:
    """Everything the CSMS knows about one charge point, across its reconnections."""

    def __init__(self, csms: "CSMS", cs_id: str) -> None:
        self.csms = csms
        self.id = cs_id
        self.version: Version | None = None
        self.trace = Trace()
        self.connection: Connection | None = None
        self.connections = 0
        """Accepted WebSocket connections so far."""
        self.findings: list[str] = []
        self.forbidden: set[str] = set()
        self.violations: list[Frame] = []
        """Received CALLs of a forbidden action."""
        self.tokens: dict[str, str] = {VALID_TOKEN: "Accepted", INVALID_TOKEN: "Invalid",
                                       BLOCKED_TOKEN: "Blocked", EXPIRED_TOKEN: "Expired"}
        """idTag / idToken -> status the CSMS answers; unknown tokens get ``unknown_token_status``."""
        self.unknown_token_status = "Invalid"
        self.parents: dict[str, str] = {}
        """idTag -> parentIdTag the CSMS reports with it (1.6 idTagInfo.parentIdTag)."""
        self.boot_status = "Accepted"
        self.heartbeat_interval = csms.heartbeat_interval
        self._scripted: dict[str, list[Answer]] = {}
        self._consumed: set[int] = set()
        self._connected = asyncio.Event()
        self._transaction_ids = itertools.count(1)
        self.trace.listen(self._watch)

    # -- state -----------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.closed

    async def wait_connected(self, timeout: float = 10.0, after: int | None = None) -> None:
        """Wait until the charge point is connected (with ``after``: until connection number > after)."""
        deadline = time.monotonic() + timeout
        while not (self.connected and (after is None or self.connections > after)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConformanceFailure(f"charge point {self.id} did not connect to {self.csms.url}{self.id} "
                                         f"within {timeout:g} s")
            self._connected.clear()
            try:
                await asyncio.wait_for(self._connected.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass

    def _watch(self, frame: Frame) -> None:
        if frame.direction == "received" and frame.is_call and frame.action in self.forbidden:
            self.violations.append(frame)

    def forbid(self, *actions: str) -> None:
        """From now on, any CALL of these actions from the charge point fails the next expectation."""
        self.forbidden.update(actions)

    def allow(self, *actions: str) -> None:
        self.forbidden.difference_update(actions)

    def _check_forbidden(self) -> None:
        if self.violations:
            f = self.violations[0]
            raise ConformanceFailure(f"the charge point sent {f.action} {show(f.payload)}, which this test forbids")

    # -- answers ---------------------------------------------------------------------------------------
    def answer(self, action: str, *answers: Answer) -> None:
        """Give these answers to the next CALLs of ``action``, one each, before the defaults resume."""
        self._scripted.setdefault(action, []).extend(answers)

    def token_status(self, token: str) -> str:
        return self.tokens.get(token, self.unknown_token_status)

    def next_transaction_id(self) -> int:
        return next(self._transaction_ids)

    def handler(self, action: str, default: Callable[["Session", dict[str, Any]], Any] | None) -> Handler:
        async def handle(payload: dict[str, Any]) -> Any:
            queue = self._scripted.get(action)
            if queue:
                answer = queue.pop(0)
                if isinstance(answer, CallError):
                    raise answer
                if isinstance(answer, NoReply):
                    return NO_REPLY
                result = answer(payload) if callable(answer) else dict(answer)
                return await result if isinstance(result, Awaitable) else result
            if default is None:
                raise CallError("NotSupported", f"the harness has no default answer to {action}")
            return default(self, payload)
        return handle

    # -- CSMS-initiated messages --------------------------------------------------------------------------
    async def call(self, action: str, payload: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a CALL to the charge point and return its answer (``CallError`` on a CALLERROR)."""
        if self.connection is None or self.connection.closed:
            raise ConformanceFailure(f"cannot send {action}: charge point {self.id} is not connected")
        return await self.connection.call(action, payload, timeout=timeout)

    async def call_expect(self, action: str, payload: Mapping[str, Any], *statuses: str,
                          timeout: float | None = None) -> dict[str, Any]:
        """``call`` and require the answer's ``status`` to be one of ``statuses``; returns the answer."""
        answer = await self.call(action, payload, timeout)
        if answer.get("status") not in statuses:
            raise ConformanceFailure(f"{action} answered {answer.get('status')}, expected {' or '.join(statuses)}")
        return answer

    async def drop(self) -> None:
        """Close the charge point's WebSocket from the CSMS side."""
        if self.connection is not None:
            await self.connection.close(1001, "closed by the test")
            await bounded(self.connection.wait_closed(), 10.0)

    # -- expectations ------------------------------------------------------------------------------------
    async def expect(self, action: str, match: Mapping[str, Any] | Callable[[dict[str, Any]], bool] | None = None,
                     *, timeout: float = 10.0, strict: bool = False) -> dict[str, Any]:
        """Wait for a CALL of ``action`` from the charge point whose payload matches ``match``.

        Lenient (default): an earlier unconsumed matching CALL counts. Strict: only CALLs arriving from
        now on count, and one of ``action`` that does not match fails at once. Returns the payload.
        """
        frame = await self.expect_frame(action, match, timeout=timeout, strict=strict)
        return frame.payload

    async def expect_frame(self, action: str, match: Any = None, *, timeout: float = 10.0,
                           strict: bool = False) -> Frame:
        """``expect`` returning the whole frame (with its arrival time)."""
        self._check_forbidden()

        def ok(frame: Frame) -> bool:
            return frame.is_call and frame.direction == "received" and frame.action == action and (
                match is None or matches(match, frame.payload))

        start = len(self.trace.frames)
        if not strict:
            for k, frame in enumerate(self.trace.frames):
                if k not in self._consumed and ok(frame):
                    self._consumed.add(k)
                    return frame
        arrived: asyncio.Queue[int] = asyncio.Queue()
        stop = self.trace.listen(lambda f: arrived.put_nowait(len(self.trace.frames) - 1))
        deadline = time.monotonic() + timeout
        try:
            index = start
            while True:
                while index < len(self.trace.frames):
                    frame = self.trace.frames[index]
                    if index not in self._consumed and ok(frame):
                        self._consumed.add(index)
                        self._check_forbidden()
                        return frame
                    if strict and frame.is_call and frame.direction == "received" and frame.action == action:
                        raise ConformanceFailure(f"expected {action} matching {show(match)}, received {action} "
                                                 f"{show(frame.payload)}")
                    index += 1
                self._check_forbidden()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConformanceFailure(self._timeout_message(action, match, timeout))
                try:
                    await asyncio.wait_for(arrived.get(), remaining)
                except asyncio.TimeoutError:
                    pass
        finally:
            stop()

    async def expect_none(self, action: str | None = None, *, within: float,
                          match: Mapping[str, Any] | None = None) -> None:
        """Fail if the charge point sends a CALL of ``action`` (any action if None) within ``within`` s."""
        start = len(self.trace.frames)
        await asyncio.sleep(within)
        for frame in self.trace.frames[start:]:
            if (frame.is_call and frame.direction == "received" and (action is None or frame.action == action)
                    and (match is None or matches(match, frame.payload))):
                raise ConformanceFailure(f"expected no {action or 'message'} for {within:g} s, received "
                                         f"{frame.action} {show(frame.payload)}")

    def _timeout_message(self, action: str, match: Any, timeout: float) -> str:
        seen = [f for f in self.trace.calls() if f.action == action][-3:]
        others = [f"{f.action} {show(f.payload, 160)}" for f in self.trace.calls()[-4:]]
        text = f"expected {action}" + (f" matching {show(match)}" if match is not None else "")
        text += f" within {timeout:g} s"
        if seen:
            text += "; received " + "; ".join(f"{action} {show(f.payload, 200)}" for f in seen)
        elif others:
            text += "; last messages received: " + "; ".join(others)
        else:
            text += "; nothing received" + ("" if self.connected else " (charge point not connected)")
        return text

    def consume_all(self) -> None:
        """Mark every frame so far as seen (lenient expectations then look only at new CALLs)."""
        self._consumed.update(range(len(self.trace.frames)))


# -- default answers of the CSMS, per version ------------------------------------------------------------
def _boot(s: Session, p: dict[str, Any]) -> dict[str, Any]:
    return {"status": s.boot_status, "currentTime": now_iso(), "interval": s.heartbeat_interval}


def _id_tag_info(s: Session, token: str) -> dict[str, Any]:
    info: dict[str, Any] = {"status": s.token_status(token)}
    if token in s.parents:
        info["parentIdTag"] = s.parents[token]
    return info


DEFAULTS_16: dict[str, Callable[[Session, dict[str, Any]], Any]] = {
    "BootNotification": _boot,
    "Heartbeat": lambda s, p: {"currentTime": now_iso()},
    "StatusNotification": lambda s, p: {},
    "MeterValues": lambda s, p: {},
    "Authorize": lambda s, p: {"idTagInfo": _id_tag_info(s, p["idTag"])},
    "StartTransaction": lambda s, p: {"transactionId": s.next_transaction_id(), "idTagInfo": _id_tag_info(s, p["idTag"])},
    "StopTransaction": lambda s, p: {"idTagInfo": _id_tag_info(s, p["idTag"])} if "idTag" in p else {},
    "DataTransfer": lambda s, p: {"status": "UnknownVendorId"},
    "DiagnosticsStatusNotification": lambda s, p: {},
    "FirmwareStatusNotification": lambda s, p: {},
}

DEFAULTS_201: dict[str, Callable[[Session, dict[str, Any]], Any]] = {
    "BootNotification": _boot,
    "Heartbeat": lambda s, p: {"currentTime": now_iso()},
    "StatusNotification": lambda s, p: {},
    "NotifyEvent": lambda s, p: {},
    "NotifyReport": lambda s, p: {},
    "SecurityEventNotification": lambda s, p: {},
    "MeterValues": lambda s, p: {},
    "Authorize": lambda s, p: {"idTokenInfo": {"status": s.token_status(p["idToken"]["idToken"])}},
    "TransactionEvent": lambda s, p: (
        {"idTokenInfo": {"status": s.token_status(p["idToken"]["idToken"])}} if "idToken" in p else {}),
    "ReportChargingProfiles": lambda s, p: {},
    "NotifyChargingLimit": lambda s, p: {},
    "ClearedChargingLimit": lambda s, p: {},
    "NotifyEVChargingNeeds": lambda s, p: {"status": "Accepted"},
    "NotifyEVChargingSchedule": lambda s, p: {"status": "Accepted"},
    "FirmwareStatusNotification": lambda s, p: {},
    "LogStatusNotification": lambda s, p: {},
    "DataTransfer": lambda s, p: {"status": "UnknownVendorId"},
}

DEFAULTS: dict[str, dict[str, Callable[[Session, dict[str, Any]], Any]]] = {"1.6": DEFAULTS_16, "2.0.1": DEFAULTS_201}


class CSMS:
    """A central system for charge points under test.

    ``charge_points`` maps the accepted charge point ids to their basic-auth passwords (``None``: no
    password needed); ``None`` accepts any id. ``tls`` is an ``ssl.SSLContext`` for wss:// (security
    profile 2). ``heartbeat_interval`` [s] is what BootNotification answers.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, versions: Iterable[Version] = ("2.0.1", "1.6"),
                 charge_points: Mapping[str, str | None] | None = None, tls: ssl.SSLContext | None = None,
                 validate: bool = True, response_timeout: float = 30.0, heartbeat_interval: int = 300) -> None:
        self.host = host
        self.port = port
        self.versions = tuple(versions)
        self.charge_points = dict(charge_points) if charge_points is not None else None
        self.tls = tls
        self.validate = validate
        self.response_timeout = response_timeout
        self.heartbeat_interval = heartbeat_interval
        self.sessions: dict[str, Session] = {}
        self.refusing: float = 0.0
        """Refuse new connections until this time (``time.monotonic()``)."""
        self.refused = 0
        """Connection attempts refused so far."""
        self._server: Server | None = None
        self._conn_sessions: dict[int, Session] = {}

    @property
    def url(self) -> str:
        """``ws://host:port/``; a charge point connects to ``url + id``."""
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{self.host}:{self.port}/"

    def session(self, cs_id: str) -> Session:
        """The session of charge point ``cs_id`` (created on first use)."""
        if cs_id not in self.sessions:
            self.sessions[cs_id] = Session(self, cs_id)
        return self.sessions[cs_id]

    def refuse(self, seconds: float) -> None:
        """Refuse every connection attempt for ``seconds`` from now (0 accepts again)."""
        self.refusing = time.monotonic() + seconds

    async def start(self) -> "CSMS":
        self._server = await serve(
            self._handle, self.host, self.port, subprotocols=[SUBPROTOCOLS[v] for v in self.versions],  # type: ignore[misc]
            process_request=self._process_request, select_subprotocol=self._select_subprotocol, ssl=self.tls,
            ping_interval=None, max_size=2**22,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        log.info("CSMS listening on %s", self.url)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            if not await bounded(self._server.wait_closed(), 15.0):
                log.warning("CSMS %s: connections still open 15 s after close", self.url)
            self._server = None

    async def __aenter__(self) -> "CSMS":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _select_subprotocol(self, connection: ServerConnection, offered: Sequence[str]) -> str | None:
        """The first offered subprotocol this CSMS speaks; None completes the handshake without one, and
        ``_handle`` then closes the connection (OCPP-J: no agreement, no session)."""
        supported = {SUBPROTOCOLS[v] for v in self.versions}
        return next((p for p in offered if p in supported), None)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        cs_id = request.path.rstrip("/").rsplit("/", 1)[-1]
        if time.monotonic() < self.refusing:
            self.refused += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "CSMS refuses connections (test fault)\n")
        if not cs_id:
            return connection.respond(HTTPStatus.NOT_FOUND, "the URL must end with the charge point id\n")
        if self.charge_points is not None:
            if cs_id not in self.charge_points:
                return connection.respond(HTTPStatus.NOT_FOUND, f"unknown charge point {cs_id}\n")
            password = self.charge_points[cs_id]
            if password is not None and not _basic_auth_ok(request.headers.get("Authorization"), cs_id, password):
                self.session(cs_id).findings.append("basic authentication failed")
                return connection.respond(HTTPStatus.UNAUTHORIZED, "basic authentication failed\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        cs_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1] if ws.request else ""
        session = self.session(cs_id)
        version = VERSION_OF_SUBPROTOCOL.get(ws.subprotocol or "")
        if version is None:
            session.findings.append(f"offered no supported subprotocol ({', '.join(SUBPROTOCOLS[v] for v in self.versions)})")
            await ws.close(1002, "no supported OCPP subprotocol")
            return
        if session.connection is not None and not session.connection.closed:
            await session.connection.close(1000, "replaced by a new connection")
        session.version = version  # type: ignore[assignment]
        handlers = {action: session.handler(action, DEFAULTS[version].get(action))
                    for action in DEFAULTS[version]}
        conn = Connection(ws, version, handlers, session.trace, validate=self.validate,  # type: ignore[arg-type]
                          response_timeout=self.response_timeout, name=f"CSMS<-{cs_id}", findings=session.findings)
        session.connection = conn
        session.connections += 1
        session._connected.set()
        log.info("charge point %s connected (OCPP %s)", cs_id, version)
        await conn.run()
        log.info("charge point %s disconnected", cs_id)


def _basic_auth_ok(header: str | None, user: str, password: str) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return decoded == f"{user}:{password}"


__all__ = ["CSMS", "Session", "now_iso", "boot_answer", "VALID_TOKEN", "INVALID_TOKEN", "BLOCKED_TOKEN",
           "EXPIRED_TOKEN", "DEFAULTS"]
