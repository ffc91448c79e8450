"""OCTT 1.6 reusable and memory states (test case document §2.25-2.26) and the configured values.

A test case starts from a state such as *Charging* or *IdTagCached*; these coroutines bring the charge
point under test there through the CSMS session and the control seam, checking the state's own
validations on the way. ``Settings`` holds the "<Configured ...>" values of the OCTT documents, chosen
short so a case runs in seconds on an emulated rig; a bench run can lengthen them.

Times: seconds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hil.ocpp.conformance import ConformanceFailure, step
from hil.ocpp.csms import VALID_TOKEN, Session
from hil.ocpp.fixtures import ChargerUnderTest


@dataclass(frozen=True)
class Settings:
    """The OCTT "<Configured ...>" values."""

    connector: int = 1
    valid_id_tag: str = VALID_TOKEN
    valid_id_tag_2: str = "EVHILVALID02"
    meter_value_sample_interval: int = 2
    clock_aligned_data_interval: int = 2
    heartbeat_interval: int = 2
    connection_timeout: int = 2
    message_timeout: float = 10.0
    """How long a step waits for a message."""
    max_time_deviation: float = 1.0
    """Tolerance on intervals and timestamps (certification labs configure 4 s)."""
    transaction_duration: float = 3.0
    """How long "no transaction is started" is watched."""
    local_list_id_tag: str = "EVHILLOCAL01"
    """An idTag the Central System does not know (it answers Invalid); only a local list accepts it."""
    energy_tolerance: float = 0.02
    """Relative difference allowed between the energy a charge point reports and the energy the rig's meter on
    its connector counts: two meters of accuracy class 1 (IEC 62053-21; MID class B) may each be 1 % off. A
    bench whose reference meter measures somewhere else (a DC charger's AC input) adds its conversion losses."""
    reference_meter_lag: float = 1.0
    """How old the register of the rig's reference meter may be when it is read: its update cycle plus the
    Modbus round trip (the emulated meters update every 0.1 s; real ones within 1 s)."""


SETTINGS = Settings()


async def get_configuration(session: Session, key: str) -> str | None:
    """Reusable state GetConfiguration: the value of one key (None when the charge point does not know it)."""
    answer = await session.call("GetConfiguration", {"key": [key]})
    for entry in answer.get("configurationKey", []):
        if entry["key"] == key:
            return entry.get("value")
    return None


async def configure(session: Session, **values: str | int | bool) -> None:
    """Before-configuration: set keys, failing the case when one is not accepted."""
    for key, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        answer = await session.call("ChangeConfiguration", {"key": key, "value": text})
        if answer["status"] not in ("Accepted", "RebootRequired"):
            raise ConformanceFailure(f"before-configuration {key}={text} answered {answer['status']}")


async def authorized(cp: ChargerUnderTest, s: Settings = SETTINGS, token: str | None = None) -> None:
    """Reusable state Authorized: the valid idTag presented, Authorize accepted, connector Preparing."""
    token = token or s.valid_id_tag
    with step("Authorized", f"present idTag {token}"):
        await cp.control.present_token(token, s.connector)
        await cp.session.expect("Authorize", {"idTag": token}, timeout=s.message_timeout)
        await cp.session.expect("StatusNotification", {"connectorId": s.connector, "status": "Preparing"},
                                timeout=s.message_timeout)


async def charging(cp: ChargerUnderTest, s: Settings = SETTINGS, token: str | None = None,
                   profile: dict | None = None) -> int:
    """Reusable state Charging (plug in first, then remote start); returns the transactionId."""
    token = token or s.valid_id_tag
    session = cp.session
    with step("Charging", "plug in, RemoteStartTransaction, StartTransaction, Charging"):
        authorize_remote = await get_configuration(session, "AuthorizeRemoteTxRequests")
        await cp.control.plug_in(s.connector)
        await session.expect("StatusNotification", {"connectorId": s.connector, "status": "Preparing"},
                             timeout=s.message_timeout)
        request = {"connectorId": s.connector, "idTag": token}
        if profile is not None:
            request["chargingProfile"] = profile
        await session.call_expect("RemoteStartTransaction", request, "Accepted")
        if (authorize_remote or "").lower() == "true":
            await session.expect("Authorize", {"idTag": token}, timeout=s.message_timeout)
        start = await session.expect_frame("StartTransaction", {"connectorId": s.connector, "idTag": token},
                                           timeout=s.message_timeout)
        await session.expect("StatusNotification", {"connectorId": s.connector, "status": "Charging"},
                             timeout=s.message_timeout)
        return await transaction_id_of(session, start.unique_id)


async def transaction_id_of(session: Session, start_message_id: str, timeout: float = 5.0) -> int:
    """The transactionId the CSMS gave in its answer to the StartTransaction with this message id."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for f in session.trace.frames:
            if f.direction == "sent" and f.unique_id == start_message_id and "transactionId" in f.payload:
                return int(f.payload["transactionId"])
        if asyncio.get_running_loop().time() > deadline:
            raise ConformanceFailure("StartTransaction was not answered")
        await asyncio.sleep(0.02)


async def stop_by_token(cp: ChargerUnderTest, s: Settings = SETTINGS, token: str | None = None) -> dict:
    """Present the idTag that started the transaction; returns the StopTransaction payload."""
    await cp.control.present_token(token or s.valid_id_tag, s.connector)
    stop = await cp.session.expect("StopTransaction", timeout=s.message_timeout)
    await cp.session.expect("StatusNotification", {"connectorId": s.connector, "status": "Finishing"},
                            timeout=s.message_timeout)
    return stop


async def id_tag_cached(cp: ChargerUnderTest, s: Settings = SETTINGS) -> None:
    """Memory state IdTagCached: a transaction with the valid idTag, stopped locally, cable out."""
    await configure(cp.session, AuthorizationCacheEnabled=True)
    await charging(cp, s)
    with step("IdTagCached", "stop locally and unplug"):
        await stop_by_token(cp, s)
        await cp.control.unplug(s.connector)
        await cp.session.expect("StatusNotification", {"connectorId": s.connector, "status": "Available"},
                                timeout=s.message_timeout)


async def id_tag_local_auth_list(cp: ChargerUnderTest, s: Settings = SETTINGS, status: str = "Accepted",
                                 token: str | None = None) -> None:
    """Memory state IdTagLocalAuthList: the idTag in the local list (version 1)."""
    with step("IdTagLocalAuthList", "SendLocalList with the idTag"):
        answer = await cp.session.call("SendLocalList", {
            "listVersion": 1, "updateType": "Full",
            "localAuthorizationList": [{"idTag": token or s.valid_id_tag, "idTagInfo": {"status": status}}]})
        if answer["status"] != "Accepted":
            raise ConformanceFailure(f"SendLocalList answered {answer['status']}, expected Accepted")


async def connector_unavailable(cp: ChargerUnderTest, s: Settings = SETTINGS, connector: int | None = None) -> None:
    """Reusable state SetConnectorUnavailable (``connector`` 0: SetChargePointUnavailable)."""
    target = s.connector if connector is None else connector
    await cp.session.call_expect("ChangeAvailability", {"connectorId": target, "type": "Inoperative"}, "Accepted")
    match = {"status": "Unavailable"} if target == 0 else {"connectorId": target, "status": "Unavailable"}
    await cp.session.expect("StatusNotification", match, timeout=s.message_timeout)


async def offline(cp: ChargerUnderTest, s: Settings = SETTINGS) -> None:
    """Cut the network and wait until the CSMS sees the connection gone. From now on a BootNotification fails
    the case: a reconnection is not a reboot (OCPP 1.6 §4.2)."""
    cp.session.forbid("BootNotification")
    await cp.control.cut_network()
    deadline = asyncio.get_running_loop().time() + s.message_timeout
    while cp.session.connected:
        if asyncio.get_running_loop().time() > deadline:
            raise ConformanceFailure("the charge point's connection did not drop after the network was cut")
        await asyncio.sleep(0.05)


async def online(cp: ChargerUnderTest, s: Settings = SETTINGS) -> None:
    """Restore the network and wait for the charge point's new connection."""
    before = cp.session.connections
    await cp.control.restore_network()
    await cp.session.wait_connected(timeout=s.message_timeout + 10, after=before)
