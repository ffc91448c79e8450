"""OCPP 1.6 Core, Central System under test (OCTT 1.6 §3): what the CSMS answers to a charge point's
boot, sessions, authorisation outcomes, power loss and transactions delivered after an offline period.

evhil plays the charge point message by message (``ScriptedChargePoint``). These cases need nothing from
the CSMS's operator; the ones where the operator starts an action (remote start, reset, configuration,
charging profiles) need a CSMS control seam and are listed in ``not_automated.yaml``. The idTags must be
known to the CSMS with the statuses their names say (see ``hil.ocpp.csms``: EVHILVALID01 Accepted,
EVHILINVALID Invalid, EVHILBLOCKED Blocked, EVHILEXPIRED Expired).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.csms import BLOCKED_TOKEN, EXPIRED_TOKEN, INVALID_TOKEN, VALID_TOKEN, now_iso
from hil.ocpp.scripted import ScriptedChargePoint
from hil.ocpp.smart_charging import format_datetime, parse_datetime

C = 1
BOOT = {"chargePointVendor": "evhil", "chargePointModel": "scripted-cp"}


def _iso(offset_s: float = 0.0) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=offset_s))


async def status(cp: ScriptedChargePoint, connector: int, value: str, error: str = "NoError") -> None:
    await cp.call("StatusNotification", {"connectorId": connector, "errorCode": error, "status": value,
                                         "timestamp": now_iso()})


async def booted(cp: ScriptedChargePoint) -> dict:
    """BootNotification answered Accepted with an interval; StatusNotification Available for 0 and 1."""
    with step("Booted", "BootNotification answered Accepted, StatusNotification Available"):
        answer = await cp.call_expect("BootNotification", BOOT, "Accepted")
        if int(answer.get("interval", 0)) <= 0:
            raise ConformanceFailure(f"BootNotification answered interval {answer.get('interval')}, expected > 0")
        for connector in (0, C):
            await status(cp, connector, "Available")
        return answer


async def authorize(cp: ScriptedChargePoint, token: str, expected: str) -> dict:
    answer = await cp.call("Authorize", {"idTag": token})
    got = answer.get("idTagInfo", {}).get("status")
    if got != expected:
        raise ConformanceFailure(f"Authorize {token} answered idTagInfo.status {got}, expected {expected}")
    return answer


async def start(cp: ScriptedChargePoint, token: str, expected: str = "Accepted", timestamp: str | None = None) -> int:
    answer = await cp.call("StartTransaction", {"connectorId": C, "idTag": token, "meterStart": 1000,
                                               "timestamp": timestamp or now_iso()})
    got = answer.get("idTagInfo", {}).get("status")
    if got != expected:
        raise ConformanceFailure(f"StartTransaction answered idTagInfo.status {got}, expected {expected}")
    return int(answer["transactionId"])


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
    payload: dict = {"transactionId": tx, "meterStop": 1500, "timestamp": timestamp or now_iso(), "reason": reason}
    if token is not None:
        payload["idTag"] = token
    answer = await cp.call("StopTransaction", payload)
    if token is not None and answer.get("idTagInfo", {}).get("status") not in (None, "Accepted"):
        raise ConformanceFailure(f"StopTransaction answered idTagInfo {answer.get('idTagInfo')}")
    return answer


@octt("TC_001_CSMS")
async def test_tc_001_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(5, "Heartbeat answered with the current time"):
        beat = await scripted16.call("Heartbeat", {})
        now = datetime.now(timezone.utc)
        when = parse_datetime(beat["currentTime"])
        if abs((when - now).total_seconds()) > 5:
            raise ConformanceFailure(f"Heartbeat currentTime {beat['currentTime']} is not the current time")


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
    tx = await charging(scripted16)
    with step(1, "power back: BootNotification accepted"):
        await scripted16.call_expect("BootNotification", BOOT, "Accepted")
    with step(3, "StatusNotification Finishing for the connector, Available for connector 0"):
        await status(scripted16, 0, "Available")
        await status(scripted16, C, "Finishing")
    with step(5, "StopTransaction reason PowerLoss acknowledged"):
        await stop(scripted16, tx, "PowerLoss")


@octt("TC_037_1_CSMS")
async def test_tc_037_1_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "after the offline period: StartTransaction (timestamped in the past) answered Accepted"):
        await start(scripted16, VALID_TOKEN, timestamp=_iso(-60))
    with step(3, "StatusNotification Charging"):
        await status(scripted16, C, "Charging")


@octt("TC_037_3_CSMS")
async def test_tc_037_3_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "after the offline period: StartTransaction with an invalid idTag answered Invalid"):
        tx = await start(scripted16, INVALID_TOKEN, expected="Invalid", timestamp=_iso(-60))
    with step(3, "Charging, then StopTransaction DeAuthorized and Finishing acknowledged"):
        await status(scripted16, C, "Charging")
        await stop(scripted16, tx, "DeAuthorized")
        await status(scripted16, C, "Finishing")


@octt("TC_039_CSMS")
async def test_tc_039_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "a whole transaction from the offline period: StartTransaction answered Accepted"):
        tx = await start(scripted16, VALID_TOKEN, timestamp=_iso(-120))
    with step(3, "StopTransaction reason Local acknowledged"):
        await stop(scripted16, tx, "Local", token=VALID_TOKEN, timestamp=_iso(-60))


@octt("TC_064_CSMS")
async def test_tc_064_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "DataTransfer with an unknown vendorId: Rejected, UnknownMessageId or UnknownVendorId"):
        await scripted16.call_expect("DataTransfer", {"vendorId": "org.evhil.unknown", "messageId": "Probe"},
                                     "Rejected", "UnknownMessageId", "UnknownVendorId")
