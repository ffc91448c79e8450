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

import base64
import itertools
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from hil.ocpp.conformance import ConformanceFailure
from hil.ocpp.peer import Peer
from hil.ocpp.rpc import (SUBPROTOCOLS, VERSION_OF_SUBPROTOCOL, CallError, CallTimeout, Connection, ConnectionClosed,
                          bounded)
from hil.ocpp.schemas import SchemaViolation, Version
from hil.ocpp.smart_charging import format_datetime

log = logging.getLogger(__name__)


VALID_TOKEN = "EVHILVALID01"
INVALID_TOKEN = "EVHILINVALID"
BLOCKED_TOKEN = "EVHILBLOCKED"
EXPIRED_TOKEN = "EVHILEXPIRED"


def now_iso() -> str:
    """The current UTC time as OCPP writes it (RFC 3339, ``Z``)."""
    return format_datetime(datetime.now(timezone.utc))


def boot_answer(status: str, interval: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A scripted BootNotification answer (``status`` Accepted, Pending or Rejected; ``interval`` [s])."""
    return lambda payload: {"status": status, "currentTime": now_iso(), "interval": interval}


class Session(Peer):
    """Everything the CSMS knows about one charge point, across its reconnections."""

    def __init__(self, csms: "CSMS", cs_id: str) -> None:
        super().__init__(cs_id, f"{csms.url}{cs_id}")
        self.csms = csms
        self.version: Version | None = None
        self.tokens: dict[str, str] = {VALID_TOKEN: "Accepted", INVALID_TOKEN: "Invalid",
                                       BLOCKED_TOKEN: "Blocked", EXPIRED_TOKEN: "Expired"}
        """idTag / idToken -> status the CSMS answers; unknown tokens get ``unknown_token_status``."""
        self.unknown_token_status = "Invalid"
        self.parents: dict[str, str] = {}
        """Token -> the group the CSMS reports with it (1.6 idTagInfo.parentIdTag, 2.0.1
        idTokenInfo.groupIdToken)."""
        self.boot_status = "Accepted"
        self.heartbeat_interval = csms.heartbeat_interval

    def token_status(self, token: str) -> str:
        return self.tokens.get(token, self.unknown_token_status)

    def next_transaction_id(self) -> int:
        """A transaction id no other transaction of this CSMS has had, whichever charge point it was on."""
        return next(self.csms._transaction_ids)


class OperatorError(RuntimeError):
    """An operator request failed: the charge point is not connected, answered a CALLERROR, did not answer
    in time, or the request does not fit its OCPP version."""


_VARIABLE_KEY = re.compile(r"^(?P<component>[^.\[\]]+)(?:\[evse (?P<evse>\d+)(?:/(?P<connector>\d+))?\])?"
                           r"\.(?P<variable>[^.\[\]]+)(?:\[(?P<instance>[^\[\]]+)\])?$")
_remote_start_ids = itertools.count(1)


def variable_of_key(key: str) -> dict[str, Any]:
    """A 2.0.1 GetVariableData / SetVariableData address (``component``, ``variable``) from a configuration
    key written as the device model labels it: ``Component.Variable``, optionally ``Variable[instance]`` and
    ``Component[evse E]`` or ``Component[evse E/C]`` (``OCPPCommCtrlr.MessageTimeout[Default]``,
    ``EVSE[evse 1].AvailabilityState``); ``OperatorError`` names a key of another form."""
    m = _VARIABLE_KEY.match(key)
    if m is None:
        raise OperatorError(f"configuration key {key!r}: OCPP 2.0.1 needs Component.Variable "
                            "(optionally Component[evse E/C].Variable[instance])")
    component: dict[str, Any] = {"name": m["component"]}
    if m["evse"]:
        component["evse"] = {"id": int(m["evse"])} | ({"connectorId": int(m["connector"])} if m["connector"] else {})
    variable: dict[str, Any] = {"name": m["variable"]} | ({"instance": m["instance"]} if m["instance"] else {})
    return {"component": component, "variable": variable}


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class HarnessOperator:
    """The operator console of evhil's CSMS for one charge point (``hil.control.Operator`` and more): the
    reference CSMS under test in the suites, and ``hil csms --operator-port`` out of process.

    Each action sends the request of the charge point's OCPP version and returns its CALLRESULT payload
    (the answer also lands in the trace); ``OperatorError`` names a CALLERROR, no answer within ``timeout``
    [s] (default: the CSMS's response timeout), or a charge point that is not connected. For 2.0.1 a
    connector is the EVSE id (connector 1 of it where the request names one), ``reset`` kinds Hard and Soft
    are Immediate and OnIdle, and configuration keys are ``Component.Variable`` (see ``variable_of_key``).
    ``profile`` is an OCPP-J charging profile of the charge point's version, ``duration`` in s.
    """

    def __init__(self, session: Session, timeout: float | None = None) -> None:
        self.session = session
        self.timeout = session.csms.response_timeout if timeout is None else timeout

    @property
    def v201(self) -> bool:
        return self.session.version == "2.0.1"

    async def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send ``action`` to the charge point and return its CALLRESULT payload (``OperatorError`` otherwise)."""
        cs = self.session.id
        if not self.session.connected:
            raise OperatorError(f"{action} not sent: charge point {cs} is not connected")
        try:
            return await self.session.call(action, payload, timeout=self.timeout)
        except CallError as exc:
            raise OperatorError(f"charge point {cs} answered {action} with CALLERROR {exc}") from None
        except CallTimeout:
            raise OperatorError(f"charge point {cs} did not answer {action} within {self.timeout:g} s") from None
        except (ConnectionClosed, ConformanceFailure):
            raise OperatorError(f"{action} not sent: charge point {cs} is not connected") from None
        except SchemaViolation as exc:
            raise OperatorError(f"{action} to charge point {cs} (OCPP {self.session.version}): {exc}") from None

    async def remote_start(self, connector: int, token: str, profile: dict[str, Any] | None = None,
                           token_type: str = "ISO14443") -> dict[str, Any]:
        """RemoteStartTransaction (2.0.1: RequestStartTransaction; ``token_type`` is its idToken type)."""
        if self.v201:
            return await self.request("RequestStartTransaction", _present(
                evseId=connector or None, idToken={"idToken": token, "type": token_type},
                remoteStartId=next(_remote_start_ids), chargingProfile=profile))
        return await self.request("RemoteStartTransaction", _present(connectorId=connector, idTag=token,
                                                                     chargingProfile=profile))

    async def remote_stop(self, transaction: int | str) -> dict[str, Any]:
        if self.v201:
            return await self.request("RequestStopTransaction", {"transactionId": str(transaction)})
        return await self.request("RemoteStopTransaction", {"transactionId": transaction})

    async def reset(self, kind: str) -> dict[str, Any]:
        """``kind``: Hard or Soft (2.0.1 also Immediate or OnIdle)."""
        if self.v201:
            return await self.request("Reset", {"type": {"Hard": "Immediate", "Soft": "OnIdle"}.get(kind, kind)})
        return await self.request("Reset", {"type": kind})

    async def unlock(self, connector: int) -> dict[str, Any]:
        if self.v201:
            return await self.request("UnlockConnector", {"evseId": connector, "connectorId": 1})
        return await self.request("UnlockConnector", {"connectorId": connector})

    async def get_configuration(self, key: str | None = None) -> dict[str, Any]:
        """GetConfiguration of ``key`` (None: all); 2.0.1: GetVariables of ``key``, which it needs."""
        if self.v201:
            if not key:
                raise OperatorError("GetVariables needs a key Component.Variable (OCPP 2.0.1 reads all "
                                    "variables with GetBaseReport, answered by NotifyReport)")
            return await self.request("GetVariables", {"getVariableData": [variable_of_key(key)]})
        return await self.request("GetConfiguration", {"key": [key]} if key else {})

    async def change_configuration(self, key: str, value: str) -> dict[str, Any]:
        """ChangeConfiguration (2.0.1: SetVariables of the Actual attribute)."""
        if self.v201:
            return await self.request("SetVariables", {"setVariableData": [
                {"attributeValue": value, **variable_of_key(key)}]})
        return await self.request("ChangeConfiguration", {"key": key, "value": value})

    async def clear_cache(self) -> dict[str, Any]:
        return await self.request("ClearCache", {})

    async def set_charging_profile(self, connector: int, profile: dict[str, Any]) -> dict[str, Any]:
        if self.v201:
            return await self.request("SetChargingProfile", {"evseId": connector, "chargingProfile": profile})
        return await self.request("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": profile})

    async def clear_charging_profile(self, profile_id: int | None = None, connector: int | None = None,
                                     purpose: str | None = None, stack_level: int | None = None) -> dict[str, Any]:
        """ClearChargingProfile by id and/or criteria (none: every profile)."""
        if self.v201:
            criteria = _present(evseId=connector, chargingProfilePurpose=purpose, stackLevel=stack_level)
            return await self.request("ClearChargingProfile", _present(chargingProfileId=profile_id,
                                                                        chargingProfileCriteria=criteria or None))
        return await self.request("ClearChargingProfile", _present(
            id=profile_id, connectorId=connector, chargingProfilePurpose=purpose, stackLevel=stack_level))

    async def get_composite_schedule(self, connector: int, duration: int,
                                     rate_unit: str | None = None) -> dict[str, Any]:
        """GetCompositeSchedule over ``duration`` [s], in ``rate_unit`` (A or W; None: the charge point's choice)."""
        where = "evseId" if self.v201 else "connectorId"
        return await self.request("GetCompositeSchedule", _present(**{where: connector}, duration=duration,
                                                                   chargingRateUnit=rate_unit))

    async def change_availability(self, connector: int, kind: str) -> dict[str, Any]:
        """``kind``: Operative or Inoperative; connector 0 is the whole charge point."""
        if self.v201:
            return await self.request("ChangeAvailability", _present(
                operationalStatus=kind, evse={"id": connector} if connector else None))
        return await self.request("ChangeAvailability", {"connectorId": connector, "type": kind})

    async def trigger_message(self, message: str, connector: int | None = None) -> dict[str, Any]:
        """TriggerMessage of ``message`` (e.g. StatusNotification), for ``connector`` if given."""
        if self.v201:
            return await self.request("TriggerMessage", _present(
                requestedMessage=message, evse={"id": connector} if connector is not None else None))
        return await self.request("TriggerMessage", _present(requestedMessage=message, connectorId=connector))


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

def _id_token_info(s: Session, token: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"status": s.token_status(token["idToken"])}
    if token["idToken"] in s.parents:
        info["groupIdToken"] = {"idToken": s.parents[token["idToken"]], "type": "Central"}
    return info


DEFAULTS_201: dict[str, Callable[[Session, dict[str, Any]], Any]] = {
    "BootNotification": _boot,
    "Heartbeat": lambda s, p: {"currentTime": now_iso()},
    "StatusNotification": lambda s, p: {},
    "NotifyEvent": lambda s, p: {},
    "NotifyReport": lambda s, p: {},
    "SecurityEventNotification": lambda s, p: {},
    "MeterValues": lambda s, p: {},
    "Authorize": lambda s, p: {"idTokenInfo": _id_token_info(s, p["idToken"])},
    "TransactionEvent": lambda s, p: {"idTokenInfo": _id_token_info(s, p["idToken"])} if "idToken" in p else {},
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
        self.handshakes: dict[str, list[float]] = {}
        """Charge point id -> ``time.monotonic()`` of every opening handshake it attempted, refused or not."""
        self._server: Server | None = None
        self._conn_sessions: dict[int, Session] = {}
        self._transaction_ids = itertools.count(1)

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

    def operator(self, cs_id: str) -> "HarnessOperator":
        """This CSMS's operator console for charge point ``cs_id`` (when it is the CSMS under test)."""
        return HarnessOperator(self.session(cs_id))

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
        self.handshakes.setdefault(cs_id, []).append(time.monotonic())
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
        session.connected_now(conn)
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


__all__ = ["CSMS", "Session", "HarnessOperator", "OperatorError", "variable_of_key", "now_iso", "boot_answer", "VALID_TOKEN", "INVALID_TOKEN", "BLOCKED_TOKEN",
           "EXPIRED_TOKEN", "DEFAULTS"]
