"""A scripted charge point: evhil plays the charge point, step by step, for a CSMS under test.

Unlike the emulator (``charge_point``), it has no behaviour of its own: a test says which message to
send and checks the CSMS's answer, as the OCTT does with the CSMS under test. CSMS-initiated requests
get plausible default answers unless the test scripts others (``answer``). The trace, expectations and
forbidden actions are those of ``Peer``. Every request must be answered by its .conf, valid against its
schema, within the charge point's message timeout: anything else fails the test step that sent it
(``call``). Times: seconds.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.client import connect

from hil.control import Operator
from hil.ocpp.conformance import ConformanceFailure
from hil.ocpp.peer import Peer
from hil.ocpp.rpc import SUBPROTOCOLS, CallError, CallTimeout, Connection, ConnectionClosed
from hil.ocpp.schemas import SchemaViolation, Version

MESSAGE_TIMEOUT_S = 10.0
"""How long the scripted charge point waits for the CSMS's answer to a request [s]: OCPP-J 1.6 §4.1.1 leaves
the timeout to the implementation; a CSMS on a fixed line answers well within it."""

DEFAULTS_16: dict[str, Any] = {
    "ChangeAvailability": {"status": "Accepted"},
    "ChangeConfiguration": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Accepted"},
    "DataTransfer": {"status": "UnknownVendorId"},
    "GetConfiguration": {"configurationKey": []},
    "GetLocalListVersion": {"listVersion": 0},
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "SendLocalList": {"status": "Accepted"},
    "SetChargingProfile": {"status": "Accepted"},
    "GetCompositeSchedule": {"status": "Rejected"},
    "TriggerMessage": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
}
"""What the scripted 1.6 charge point answers when a test scripts nothing else."""


class ScriptedChargePoint(Peer):
    """Charge point ``cs_id`` of a CSMS under test at ``url`` (the base URL; the id is appended)."""

    def __init__(self, cs_id: str, url: str, version: Version = "1.6", *, password: str | None = None,
                 tls: ssl.SSLContext | None = None, validate: bool = True,
                 response_timeout: float = MESSAGE_TIMEOUT_S) -> None:
        super().__init__(cs_id, url.rstrip("/") + "/" + cs_id)
        self.url = url
        self.version = version
        self.password = password
        self.tls = tls
        self.validate = validate
        self.response_timeout = response_timeout
        self._runner: asyncio.Task[None] | None = None
        self.operator: Operator | None = None
        """How a suite gets the CSMS under test to start an action (its operator seam), if it has one."""

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the WebSocket (subprotocol of the version, basic auth when a password is set)."""
        headers = {}
        if self.password is not None:
            token = base64.b64encode(f"{self.id}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        ws = await connect(self.where, subprotocols=[SUBPROTOCOLS[self.version]],  # type: ignore[list-item]
                           additional_headers=headers, ssl=self.tls, open_timeout=timeout, ping_interval=None)
        if ws.subprotocol != SUBPROTOCOLS[self.version]:
            await ws.close()
            raise ConnectionError(f"{self.where}: the CSMS did not agree to {SUBPROTOCOLS[self.version]}")
        defaults = DEFAULTS_16 if self.version == "1.6" else {}
        handlers = {action: self.handler(action, lambda peer, payload, a=answer: dict(a))
                    for action, answer in defaults.items()}
        conn = Connection(ws, self.version, handlers, self.trace, validate=self.validate,
                          response_timeout=self.response_timeout, name=f"{self.id}->CSMS", findings=self.findings)
        self._runner = asyncio.ensure_future(conn.run())
        self.connected_now(conn)

    async def call(self, action: str, payload: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send ``action`` to the CSMS under test and return its .conf payload. OCPP 1.6 §4 has the Central
        System respond to every request with its .conf; so a CALLERROR, an answer that breaks the .conf's
        JSON schema (OCPP-J 1.6 §4.2.2), no answer within the message timeout (``timeout``, default
        ``response_timeout`` s; OCPP-J 1.6 §4.1.1) or a closed connection raise ``ConformanceFailure``
        (naming the current step)."""
        limit = self.response_timeout if timeout is None else timeout
        try:
            return await super().call(action, payload, timeout=limit)
        except CallTimeout:
            raise ConformanceFailure(f"no answer to {action} within the message timeout of {limit:g} s "
                                     f"(OCPP 1.6 §4: the Central System SHALL respond with {action}.conf; "
                                     "OCPP-J 1.6 §4.1.1)") from None
        except CallError as exc:
            raise ConformanceFailure(f"{action} answered with CALLERROR {exc}, expected {action}.conf "
                                     "(OCPP 1.6 §4: the Central System SHALL respond with it)") from None
        except SchemaViolation as exc:
            if exc.kind != "response":
                raise
            raise ConformanceFailure(f"{action}.conf breaks its JSON schema (OCPP-J 1.6 §4.2.2): "
                                     f"{exc.detail}") from None
        except ConnectionClosed:
            raise ConformanceFailure(f"the CSMS closed the connection instead of answering {action}") from None

    async def reconnect(self) -> None:
        """Close the WebSocket and open a new one: connectivity lost and restored, or the power cycled."""
        await self.close()
        await self.connect()

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        if self._runner is not None:
            await asyncio.wait({self._runner}, timeout=5.0)
            self._runner = None
