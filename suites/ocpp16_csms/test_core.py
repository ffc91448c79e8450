"""OCPP 1.6 Core, Central System under test (OCTT 1.6 §3): what the CSMS answers to a charge point's
boot, sessions, authorisation outcomes, power loss and transactions delivered after an offline period.

evhil plays the charge point message by message (``ScriptedChargePoint``); the cases where the CSMS's
operator starts an action are in ``test_operator.py``. The idTags must be known to the CSMS with the
statuses their names say (see ``hil.ocpp.csms``: EVHILVALID01 Accepted, EVHILINVALID Invalid, EVHILBLOCKED
Blocked, EVHILEXPIRED Expired).

Besides each case's tool validations, every case holds the CSMS to what OCPP 1.6 requires of any answer:
each request is answered with its .conf, valid against its JSON schema (so StatusNotification.conf and
MeterValues.conf are empty), within the charge point's message timeout (``ScriptedChargePoint.call``), and
every transactionId the CSMS gives the charge point is one it has not given before (``start``). Where a case
loses connectivity or power, the scripted charge point really closes its WebSocket and opens a new one.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.csms import BLOCKED_TOKEN, EXPIRED_TOKEN, INVALID_TOKEN, VALID_TOKEN, now_iso
from hil.ocpp.rpc import CALLRESULT
from hil.ocpp.scripted import ScriptedChargePoint
from hil.ocpp.smart_charging import format_datetime, parse_datetime

C = 1
BOOT = {"chargePointVendor": "evhil", "chargePointModel": "scripted-cp"}
CLOCK_TOLERANCE_S = 5.0
"""How far the CSMS's currentTime may lie outside the request/answer exchange that carried it [s] (two hosts'
clocks, NTP-synchronised)."""


def _iso(offset_s: float = 0.0) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=offset_s))


async def status(cp: ScriptedChargePoint, connector: int, value: str, error: str = "NoError") -> None:
    await cp.call("StatusNotification", {"connectorId": connector, "errorCode": error, "status": value,
                                         "timestamp": now_iso()})


async def booted(cp: ScriptedChargePoint) -> dict:
    """Reusable state Booted (OCTT 1.6 §3.22): BootNotification answered Accepted, StatusNotification
    Available for connector 0 and the connector."""
    with step("Booted", "BootNotification answered Accepted, StatusNotification Available"):
        answer = await cp.call_expect("BootNotification", BOOT, "Accepted")
        for connector in (0, C):
            await status(cp, connector, "Available")
        return answer


def current_time(cp: ScriptedChargePoint, action: str, value: str) -> None:
    """The ``currentTime`` of the last ``action``.conf is the CSMS's current time: it falls between the
    frames of the exchange (the request sent, the answer received) within ``CLOCK_TOLERANCE_S``."""
    sent = next(f for f in reversed(cp.trace.frames) if f.direction == "sent" and f.is_call and f.action == action)
    answered = next(f for f in cp.trace.frames if f.direction == "received" and f.unique_id == sent.unique_id)
    when = parse_datetime(value).timestamp()  # type: ignore[union-attr]
    if when < sent.time - CLOCK_TOLERANCE_S or when > answered.time + CLOCK_TOLERANCE_S:
        off = when - sent.time if when < sent.time else when - answered.time
        where = "before the request was sent" if off < 0 else "after the answer arrived"
        raise ConformanceFailure(
            f"{action}.conf currentTime {value} is {abs(off):.1f} s {where}; "
            f"the Central System's current time must fall within the exchange (± {CLOCK_TOLERANCE_S:g} s; "
            "OCPP 1.6 §6.4, §6.30)")


async def authorize(cp: ScriptedChargePoint, token: str, expected: str) -> dict:
    answer = await cp.call("Authorize", {"idTag": token})
    got = answer.get("idTagInfo", {}).get("status")
    if got != expected:
        raise ConformanceFailure(f"Authorize {token} answered idTagInfo.status {got}, expected {expected} "
                                 "(OCPP 1.6 §4.1: the status of the idTag)")
    return answer


def _transaction_ids(cp: ScriptedChargePoint) -> list[int]:
    """Every transactionId the CSMS has given this charge point so far, in order."""
    return [f.payload["transactionId"] for f in cp.trace.frames if f.direction == "received"
            and f.message_type == CALLRESULT and f.action == "StartTransaction" and "transactionId" in f.payload]


async def start(cp: ScriptedChargePoint, token: str, expected: str = "Accepted", timestamp: str | None = None) -> int:
    """StartTransaction on the connector: its idTagInfo.status must be the idTag's (``expected``) and its
    transactionId one the CSMS has not given this charge point before (OCPP 1.6 §4.8 and §6.46: the id the
    Central System supplies; StopTransaction.req, MeterValues.req and RemoteStopTransaction.req name the
    transaction by it, §6.49, §6.31, §6.35)."""
    answer = await cp.call("StartTransaction", {"connectorId": C, "idTag": token, "meterStart": 1000,
                                               "timestamp": timestamp or now_iso()})
    got = answer.get("idTagInfo", {}).get("status")
    if got != expected:
        raise ConformanceFailure(f"StartTransaction {token} answered idTagInfo.status {got}, expected {expected} "
                                 "(OCPP 1.6 §4.8: the Central System MUST verify the identifier)")
    tx = int(answer["transactionId"])
    earlier = _transaction_ids(cp)[:-1]
    if tx in earlier:
        raise ConformanceFailure(
            f"StartTransaction answered transactionId {tx}, which the CSMS already gave transaction "
            f"{earlier.index(tx) + 1} of {len(earlier)} on this charge point (ids so far {earlier}); a transactionId "
            "must name one transaction (OCPP 1.6 §4.8, §6.46, §6.49)")
    return tx


async def charging(cp: ScriptedChargePoint) -> int:
    """Reusable state Charging, seen from the charge point: Preparing, Authorize, StartTransaction, Charging."""
    await booted(cp)
    with step("Charging", "Preparing, Authorize accepted, StartTransaction accepted, Charging"):
        await status(cp, C, "Preparing")
        await authorize(cp, VALID_TOKEN, "Accepted")
        tx = await start(cp, VALID_TOKEN)
        await status(cp, C, "Charging")
        return tx


async def stop(cp: ScriptedChargePoint, tx: int, reason: str, token: str | None = None,
               timestamp: str | None = None) -> dict:
    """StopTransaction, answered (OCPP 1.6 §4.10); with an idTag, the idTagInfo the answer may carry (§6.50:
    optional) must give the idTag's status, Accepted for the valid one."""
    payload: dict = {"transactionId": tx, "meterStop": 1500, "timestamp": timestamp or now_iso(), "reason": reason}
    if token is not None:
        payload["idTag"] = token
    answer = await cp.call("StopTransaction", payload)
    if token is not None and answer.get("idTagInfo", {}).get("status") not in (None, "Accepted"):
        raise ConformanceFailure(f"StopTransaction {token} answered idTagInfo {answer.get('idTagInfo')}, expected "
                                 "status Accepted or no idTagInfo (OCPP 1.6 §4.10, §6.50)")
    return answer


async def meter_values(cp: ScriptedChargePoint, tx: int, timestamp: str, wh: int) -> None:
    """MeterValues of transaction ``tx`` (the energy register [Wh] at ``timestamp``); MeterValues.conf has no
    fields (OCPP 1.6 §4.7, §6.32), which ``ScriptedChargePoint.call`` holds it to."""
    await cp.call("MeterValues", {"connectorId": C, "transactionId": tx, "meterValue": [{
        "timestamp": timestamp, "sampledValue": [{"value": str(wh), "context": "Sample.Periodic",
                                                  "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})


@octt("TC_001_CSMS")
async def test_tc_001_csms(scripted16: ScriptedChargePoint) -> None:
    with step(2, "BootNotification answered Accepted with a heartbeat interval > 0 s and the current time"):
        boot = await scripted16.call_expect("BootNotification", BOOT, "Accepted")
        if boot["interval"] <= 0:
            raise ConformanceFailure(
                f"BootNotification.conf Accepted with interval {boot['interval']} s; the charge point sends a "
                "Heartbeat every interval s (step 5), which needs an interval > 0 s (OCPP 1.6 §4.2, §6.4)")
        current_time(scripted16, "BootNotification", boot["currentTime"])
    with step(3, "StatusNotification Available for connector 0 and the connector, each answered"):
        for connector in (0, C):
            await status(scripted16, connector, "Available")
    with step(5, "Heartbeat answered with the current time"):
        beat = await scripted16.call("Heartbeat", {})
        current_time(scripted16, "Heartbeat", beat["currentTime"])


@octt("TC_003_CSMS")
async def test_tc_003_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "StatusNotification Preparing"):
        await status(scripted16, C, "Preparing")
    with step(3, "Authorize: idTagInfo.status Accepted"):
        await authorize(scripted16, VALID_TOKEN, "Accepted")
    with step(5, "StartTransaction: idTagInfo.status Accepted, a transactionId"):
        await start(scripted16, VALID_TOKEN)
    with step(7, "StatusNotification Charging"):
        await status(scripted16, C, "Charging")


@octt("TC_004_1_CSMS")
async def test_tc_004_1_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "identification first: Authorize accepted, then Preparing, StartTransaction, Charging"):
        await authorize(scripted16, VALID_TOKEN, "Accepted")
        await status(scripted16, C, "Preparing")
        await start(scripted16, VALID_TOKEN)
        await status(scripted16, C, "Charging")


@octt("TC_004_2_CSMS")
async def test_tc_004_2_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "Authorized, Preparing, then Available after the connection timeout: both acknowledged"):
        await authorize(scripted16, VALID_TOKEN, "Accepted")
        await status(scripted16, C, "Preparing")
        await status(scripted16, C, "Available")


@octt("TC_005_1_CSMS")
async def test_tc_005_1_csms(scripted16: ScriptedChargePoint) -> None:
    tx = await charging(scripted16)
    with step(1, "EV side disconnected: SuspendedEV, StopTransaction EVDisconnected, Finishing, Available"):
        await status(scripted16, C, "SuspendedEV")
        await stop(scripted16, tx, "EVDisconnected")
        await status(scripted16, C, "Finishing")
        await status(scripted16, C, "Available")


async def _authorize_rejected(cp: ScriptedChargePoint, token: str, expected: str) -> None:
    await booted(cp)
    with step(1, f"Authorize {token}: idTagInfo.status {expected}"):
        await authorize(cp, token, expected)


@octt("TC_023_1_CSMS")
async def test_tc_023_1_csms(scripted16: ScriptedChargePoint) -> None:
    await _authorize_rejected(scripted16, INVALID_TOKEN, "Invalid")


@octt("TC_023_2_CSMS")
async def test_tc_023_2_csms(scripted16: ScriptedChargePoint) -> None:
    await _authorize_rejected(scripted16, EXPIRED_TOKEN, "Expired")


@octt("TC_023_3_CSMS")
async def test_tc_023_3_csms(scripted16: ScriptedChargePoint) -> None:
    await _authorize_rejected(scripted16, BLOCKED_TOKEN, "Blocked")


@octt("TC_032_1_CSMS")
async def test_tc_032_1_csms(scripted16: ScriptedChargePoint) -> None:
    before = await charging(scripted16)
    with step(1, "power cut and back: a new connection, BootNotification accepted"):
        await scripted16.reconnect()
        await scripted16.call_expect("BootNotification", BOOT, "Accepted")
    with step(3, "StatusNotification Finishing for the connector, Available for connector 0"):
        await status(scripted16, 0, "Available")
        await status(scripted16, C, "Finishing")
    with step(5, "StopTransaction reason PowerLoss acknowledged"):
        await stop(scripted16, before, "PowerLoss")
    with step(7, "the connector charges again: the new transaction gets a transactionId of its own (OCPP 1.6 §4.8)"):
        await status(scripted16, C, "Available")
        await status(scripted16, C, "Preparing")
        await authorize(scripted16, VALID_TOKEN, "Accepted")
        await start(scripted16, VALID_TOKEN)
        await status(scripted16, C, "Charging")


@octt("TC_037_1_CSMS")
async def test_tc_037_1_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "connectivity restored (a new connection): StartTransaction timestamped in the past, Accepted"):
        await scripted16.reconnect()
        await start(scripted16, VALID_TOKEN, timestamp=_iso(-60))
    with step(3, "StatusNotification Charging"):
        await status(scripted16, C, "Charging")


@octt("TC_037_3_CSMS")
async def test_tc_037_3_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "connectivity restored (a new connection): StartTransaction with an invalid idTag answered Invalid"):
        await scripted16.reconnect()
        tx = await start(scripted16, INVALID_TOKEN, expected="Invalid", timestamp=_iso(-60))
    with step(3, "Charging, then StopTransaction DeAuthorized and Finishing acknowledged"):
        await status(scripted16, C, "Charging")
        await stop(scripted16, tx, "DeAuthorized")
        await status(scripted16, C, "Finishing")


@octt("TC_039_CSMS")
async def test_tc_039_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "connectivity restored (a new connection): the queued StartTransaction answered Accepted"):
        await scripted16.reconnect()
        tx = await start(scripted16, VALID_TOKEN, timestamp=_iso(-120))
    with step("2a", "the queued MeterValues of the transaction: an empty MeterValues.conf (OCPP 1.6 §4.7)"):
        await meter_values(scripted16, tx, _iso(-90), 1250)
    with step(3, "the queued StopTransaction reason Local acknowledged"):
        await stop(scripted16, tx, "Local", token=VALID_TOKEN, timestamp=_iso(-60))


@octt("TC_064_CSMS")
async def test_tc_064_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "DataTransfer with an unknown vendorId: Rejected, UnknownMessageId or UnknownVendorId"):
        await scripted16.call_expect("DataTransfer", {"vendorId": "org.evhil.unknown", "messageId": "Probe"},
                                     "Rejected", "UnknownMessageId", "UnknownVendorId")
