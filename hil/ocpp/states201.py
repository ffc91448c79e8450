"""OCTT 2.0.1 reusable and memory states (Part 6 §2.18-2.19) and the configured values of the test system.

A case starts from a state such as *EnergyTransferStarted* or *IdTokenCached*; these coroutines bring the
charging station under test there through the CSMS session and the control seam, checking the state's own
validations on the way. Many steps depend on ``TxCtrlr.TxStartPoint`` / ``TxStopPoint``: each state reads
them from the station and expects a TransactionEvent only where the configured points make one due, as
the OCTT tables say.

``Settings`` holds the "<cfg ...>" values, chosen short so a case runs in seconds on an emulated rig; a
bench run can lengthen them. Times: seconds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hil.instruments.energy_meter import EnergyMeter
from hil.ocpp.conformance import ConformanceFailure, step
from hil.ocpp.csms import VALID_TOKEN, Session
from hil.ocpp.fixtures import ChargerUnderTest


@dataclass(frozen=True)
class Settings:
    """The OCTT "<cfg ...>" values."""

    evse: int = 1
    connector: int = 1
    valid_token: str = VALID_TOKEN
    valid_token_2: str = "EVHILVALID02"
    token_type: str = "ISO14443"
    heartbeat_interval: int = 2
    tx_updated_interval: int = 2
    ev_connection_timeout: int = 3
    offline_threshold: int = 4
    retry_back_off_wait_minimum: int = 2
    message_timeout: float = 10.0
    """How long a step waits for a message."""
    max_time_deviation: float = 1.0
    """Tolerance on intervals and timestamps (certification labs configure 4 s)."""
    transaction_duration: float = 1.0
    """How long a transaction runs before a stop is requested."""


SETTINGS = Settings()
_remote_start_ids = itertools.count(1)


def token(s: Settings = SETTINGS, value: str | None = None) -> dict[str, str]:
    """A wire idToken of the configured type."""
    return {"idToken": value or s.valid_token, "type": s.token_type}


def _split(label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``Component.Variable[instance]`` as wire component and variable."""
    component, _, rest = label.partition(".")
    name, _, instance = rest.partition("[")
    variable: dict[str, Any] = {"name": name}
    if instance:
        variable["instance"] = instance.rstrip("]")
    return {"name": component}, variable


async def get_variable(session: Session, label: str) -> str | None:
    """The Actual value of ``Component.Variable[instance]`` (None when the station does not have it)."""
    component, variable = _split(label)
    answer = await session.call("GetVariables", {"getVariableData": [{"component": component, "variable": variable}]})
    result = answer["getVariableResult"][0]
    return result.get("attributeValue") if result["attributeStatus"] == "Accepted" else None


async def set_variables(session: Session, **values: str | int | bool) -> None:
    """Before-configuration: ``set_variables(s, TxCtrlr__TxStartPoint="EVConnected")`` (``__`` separates the
    component; ``_I_`` opens an instance: ``OCPPCommCtrlr__MessageAttempts_I_TransactionEvent``). Fails the
    case when a value is not accepted."""
    data = []
    for key, value in values.items():
        component, _, rest = key.partition("__")
        name, _, instance = rest.partition("_I_")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        variable: dict[str, Any] = {"name": name, **({"instance": instance} if instance else {})}
        data.append({"component": {"name": component}, "variable": variable, "attributeValue": text})
    answer = await session.call("SetVariables", {"setVariableData": data})
    for result in answer["setVariableResult"]:
        if result["attributeStatus"] not in ("Accepted", "RebootRequired"):
            raise ConformanceFailure(f"before-configuration {result['component']['name']}."
                                     f"{result['variable']['name']} answered {result['attributeStatus']}")


async def auth_defaults(session: Session, **more: str | int | bool) -> None:
    """The "auth defaults" of many cases: AuthCtrlr.Enabled true, DisableRemoteAuthorization false (plus
    ``more``, as for ``set_variables``)."""
    await set_variables(session, AuthCtrlr__Enabled=True, AuthCtrlr__DisableRemoteAuthorization=False, **more)


async def tx_points(session: Session) -> tuple[list[str], list[str]]:
    """TxCtrlr.TxStartPoint and TxStopPoint as lists."""
    start = await get_variable(session, "TxCtrlr.TxStartPoint") or ""
    stop = await get_variable(session, "TxCtrlr.TxStopPoint") or ""
    return [p for p in start.split(",") if p], [p for p in stop.split(",") if p]


def open_transaction(session: Session, evse: int | None = None) -> str | None:
    """The transactionId of the station's transaction still open (Started, not Ended) in the trace."""
    opened: dict[str, int | None] = {}
    for f in session.trace.calls():
        if f.action != "TransactionEvent" or f.direction != "received":
            continue
        tid = f.payload["transactionInfo"]["transactionId"]
        if f.payload["eventType"] == "Ended":
            opened.pop(tid, None)
        else:
            opened.setdefault(tid, (f.payload.get("evse") or {}).get("id"))
            if opened[tid] is None and "evse" in f.payload:
                opened[tid] = f.payload["evse"]["id"]
    for tid, where in opened.items():
        if evse is None or where in (None, evse):
            return tid
    return None


def reference_meter(cs: ChargerUnderTest, s: Settings = SETTINGS) -> EnergyMeter | None:
    """The rig's energy meter on the EVSE's port, for the evhil steps that judge what the station does or reports
    against it. None when the rig has none there: such a step is then skipped (a step in the report says so)
    and the case's OCTT steps still decide it."""
    meter = cs.meter(s.evse)
    if meter is None:
        with step("evhil", f"skipped: the rig has no reference meter on the port of EVSE {s.evse}"):
            pass
    return meter


def status_match(s: Settings, status: str, evse: int | None = None) -> dict[str, Any]:
    return {"evseId": evse or s.evse, "connectorId": s.connector, "connectorStatus": status}


def event_match(**fields: Any) -> dict[str, Any]:
    """A TransactionEvent match from keyword shortcuts: ``event_type``, ``trigger``, ``state``,
    ``stopped`` (``stoppedReason``), ``tx`` (transactionId), ``remote`` (remoteStartId present)."""
    out: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "event_type":
            out["eventType"] = value if not isinstance(value, tuple) else (lambda v, opts=value: v in opts)
        elif key == "trigger":
            out["triggerReason"] = value if not isinstance(value, tuple) else (lambda v, opts=value: v in opts)
        elif key == "state":
            info["chargingState"] = value if not isinstance(value, tuple) else (lambda v, opts=value: v in opts)
        elif key == "stopped":
            info["stoppedReason"] = value if not isinstance(value, tuple) else (lambda v, opts=value: v in opts)
        elif key == "tx":
            info["transactionId"] = value
        elif key == "remote":
            info["remoteStartId"] = lambda v: v is not None
        elif key == "token":
            out["idToken"] = {"idToken": value}
        else:
            out[key] = value
    if info:
        out["transactionInfo"] = info
    return out


async def ev_connected_pre_session(cs: ChargerUnderTest, s: Settings = SETTINGS) -> None:
    """RS EVConnectedPreSession: plug in; the connector is reported Occupied; a TransactionEvent where the
    start point (EVConnected) or a running transaction makes one due."""
    session = cs.session
    start, _ = await tx_points(session)
    running = open_transaction(session, s.evse) is not None
    with step("EVConnectedPreSession", "plug in: connector Occupied"):
        await cs.control.plug_in(s.evse)
        await session.expect("StatusNotification", status_match(s, "Occupied"), timeout=s.message_timeout)
        if "EVConnected" in start or running:
            await session.expect("TransactionEvent", event_match(
                event_type=("Started", "Updated"), trigger=("CablePluggedIn", "ChargingStateChanged", "RemoteStart"),
                evse={"id": s.evse, "connectorId": s.connector}), timeout=s.message_timeout)


async def authorized_local(cs: ChargerUnderTest, s: Settings = SETTINGS, value: str | None = None, *,
                           expect_authorize: bool = True) -> None:
    """RS Authorized, main A: present the token; AuthorizeRequest with it; the TransactionEvent where due
    (start point Authorized, PowerPathClosed with the EV connected, or a running transaction)."""
    session = cs.session
    start, _ = await tx_points(session)
    plugged = ev_plugged_in(cs, s)
    running = open_transaction(session, s.evse) is not None
    with step("Authorized", f"present idToken {value or s.valid_token}"):
        await cs.control.present_token(value or s.valid_token, s.evse)
        if expect_authorize:
            await session.expect("Authorize", {"idToken": {"idToken": value or s.valid_token}},
                                 timeout=s.message_timeout)
        if "Authorized" in start or running or ("PowerPathClosed" in start and plugged):
            await session.expect("TransactionEvent", event_match(trigger="Authorized", token=value or s.valid_token),
                                 timeout=s.message_timeout)


async def authorized_remote(cs: ChargerUnderTest, s: Settings = SETTINGS, value: str | None = None,
                            profile: dict[str, Any] | None = None) -> dict[str, Any]:
    """RS Authorized, main B: RequestStartTransaction accepted; AuthorizeRequest when AuthorizeRemoteStart;
    the TransactionEvent where due with triggerReason RemoteStart and the remoteStartId. Returns the
    RequestStartTransaction answer."""
    session = cs.session
    start, _ = await tx_points(session)
    plugged = ev_plugged_in(cs, s)
    running = open_transaction(session, s.evse)
    authorize_remote = (await get_variable(session, "AuthCtrlr.AuthorizeRemoteStart")) == "true"
    remote_id = next(_remote_start_ids)
    with step("Authorized", "RequestStartTransaction"):
        request: dict[str, Any] = {"idToken": token(s, value), "evseId": s.evse, "remoteStartId": remote_id}
        if profile is not None:
            request["chargingProfile"] = profile
        answer = await session.call_expect("RequestStartTransaction", request, "Accepted")
        if running is not None and answer.get("transactionId") != running:
            raise ConformanceFailure(f"RequestStartTransaction answered transactionId {answer.get('transactionId')}, "
                                     f"the running transaction is {running}")
        if authorize_remote:
            await session.expect("Authorize", {"idToken": {"idToken": value or s.valid_token}},
                                 timeout=s.message_timeout)
        if "Authorized" in start or running or ("PowerPathClosed" in start and plugged):
            await session.expect("TransactionEvent", {**event_match(trigger="RemoteStart", token=value or s.valid_token),
                                                      "transactionInfo": {"remoteStartId": remote_id}},
                                 timeout=s.message_timeout)
    return answer


def ev_plugged_in(cs: ChargerUnderTest, s: Settings) -> bool:
    """Whether the test plugged the EV in (the last connector report is Occupied)."""
    last = None
    for f in cs.session.trace.calls():
        if f.action == "StatusNotification" and f.direction == "received" and f.payload.get("evseId") == s.evse:
            last = f.payload["connectorStatus"]
    return last == "Occupied"


async def energy_transfer_started(cs: ChargerUnderTest, s: Settings = SETTINGS) -> str:
    """RS EnergyTransferStarted (after Authorized): plug in if not yet, then the TransactionEvent with
    chargingState Charging. Returns the transactionId."""
    session = cs.session
    start, _ = await tx_points(session)
    if not ev_plugged_in(cs, s):
        running = open_transaction(session, s.evse) is not None
        with step("EnergyTransferStarted", "plug in: connector Occupied"):
            await cs.control.plug_in(s.evse)
            await session.expect("StatusNotification", status_match(s, "Occupied"), timeout=s.message_timeout)
            if "EVConnected" in start or running:
                await session.expect("TransactionEvent", event_match(trigger="CablePluggedIn"), timeout=s.message_timeout)
    with step("EnergyTransferStarted", "TransactionEvent chargingState Charging"):
        event = await session.expect("TransactionEvent", event_match(state="Charging"), timeout=s.message_timeout)
    return str(event["transactionInfo"]["transactionId"])


async def energy_transfer_suspended(cs: ChargerUnderTest, s: Settings = SETTINGS) -> dict[str, Any] | None:
    """RS EnergyTransferSuspended (after EnergyTransferStarted): the EV stops asking for energy; the
    TransactionEvent SuspendedEV, or the Ended one when EnergyTransfer is a stop point (returned)."""
    with step("EnergyTransferSuspended", "the EV suspends charging"):
        await cs.control.ev_suspend(s.evse)
        return await cs.session.expect("TransactionEvent", event_match(
            event_type=("Updated", "Ended"), state=("SuspendedEV", "EVConnected")), timeout=s.message_timeout)


async def charging(cs: ChargerUnderTest, s: Settings = SETTINGS, value: str | None = None) -> str:
    """EVConnectedPreSession, Authorized (local) and EnergyTransferStarted; returns the transactionId."""
    await ev_connected_pre_session(cs, s)
    await authorized_local(cs, s, value)
    return await energy_transfer_started(cs, s)


async def stop_authorized_local(cs: ChargerUnderTest, s: Settings = SETTINGS, value: str | None = None) -> dict[str, Any]:
    """RS StopAuthorized, main A: present the token again; the TransactionEvent that de-authorises
    (Ended when Authorized is a stop point). Returns it."""
    session = cs.session
    _, stop = await tx_points(session)
    with step("StopAuthorized", "present the idToken again"):
        await cs.control.present_token(value or s.valid_token, s.evse)
        match = event_match(trigger=("StopAuthorized", "ChargingStateChanged"))
        if "Authorized" in stop or "PowerPathClosed" in stop or "EnergyTransfer" in stop:
            match = event_match(event_type="Ended", trigger=("StopAuthorized", "ChargingStateChanged"),
                                state="EVConnected", stopped=lambda v: v == "Local")
            match["transactionInfo"].pop("stoppedReason")
            event = await session.expect("TransactionEvent", match, timeout=s.message_timeout)
            if event["transactionInfo"].get("stoppedReason", "Local") != "Local":
                raise ConformanceFailure(f"stoppedReason {event['transactionInfo']['stoppedReason']}, expected Local")
            return event
        return await session.expect("TransactionEvent", match, timeout=s.message_timeout)


async def stop_authorized_remote(cs: ChargerUnderTest, transaction_id: str, s: Settings = SETTINGS) -> dict[str, Any]:
    """RS StopAuthorized, main B: RequestStopTransaction accepted; TransactionEvent triggerReason RemoteStop."""
    with step("StopAuthorized", "RequestStopTransaction"):
        await cs.session.call_expect("RequestStopTransaction", {"transactionId": transaction_id}, "Accepted")
        return await cs.session.expect("TransactionEvent", event_match(trigger="RemoteStop", tx=transaction_id),
                                       timeout=s.message_timeout)


async def ev_disconnected(cs: ChargerUnderTest, s: Settings = SETTINGS) -> dict[str, Any] | None:
    """RS EVDisconnected: unplug; the connector is reported Available; the Ended TransactionEvent if the
    transaction was still open (returned)."""
    session = cs.session
    running = open_transaction(session, s.evse)
    with step("EVDisconnected", "unplug: connector Available"):
        await cs.control.unplug(s.evse)
        event = None
        if running is not None:
            event = await session.expect("TransactionEvent", event_match(
                event_type="Ended", trigger="EVCommunicationLost", state="Idle", tx=running), timeout=s.message_timeout)
        await session.expect("StatusNotification", status_match(s, "Available"), timeout=s.message_timeout)
        return event


async def id_token_cached(cs: ChargerUnderTest, s: Settings = SETTINGS, value: str | None = None) -> None:
    """MS IdTokenCached: the station learns the token's status from the CSMS and caches it. An accepted
    token gets a whole session, plug-in to unplug; another is presented with the EV connected, then the
    EV leaves."""
    session = cs.session
    value = value or s.valid_token
    await set_variables(session, AuthCacheCtrlr__Enabled=True)
    if session.token_status(value) == "Accepted":
        await charging(cs, s, value)
        await stop_authorized_local(cs, s, value)
        await ev_disconnected(cs, s)
    else:
        with step("IdTokenCached", f"present {value}, answered {session.token_status(value)}"):
            await ev_connected_pre_session(cs, s)
            await cs.control.present_token(value, s.evse)
            await session.expect("Authorize", {"idToken": {"idToken": value}}, timeout=s.message_timeout)
            await ev_disconnected(cs, s)
    session.consume_all()


async def id_token_local_auth_list(cs: ChargerUnderTest, s: Settings = SETTINGS, value: str | None = None,
                                   status: str = "Accepted", group: str | None = None) -> None:
    """MS IdTokenLocalAuthList: SendLocalList Full with the token."""
    info: dict[str, Any] = {"status": status}
    if group is not None:
        info["groupIdToken"] = token(s, group)
    with step("IdTokenLocalAuthList", "SendLocalList with the idToken"):
        await cs.session.call_expect("SendLocalList", {
            "versionNumber": 1, "updateType": "Full",
            "localAuthorizationList": [{"idToken": token(s, value), "idTokenInfo": info}]}, "Accepted")
