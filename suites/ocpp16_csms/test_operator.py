"""OCPP 1.6 Central System under test, cases its operator starts (OCTT 1.6 §3): remote start and stop,
reset, unlock, configuration, clearing the cache, charging profiles.

The operator acts through the rig's control seam (``dut.control``: ``command`` runs the CSMS's API per
action; with evhil's own CSMS as the reference it is ``HarnessOperator``). The scripted charge point then
checks the request it receives from the CSMS, answers it, and plays the rest of the case.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hil.control import Operator
from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.csms import VALID_TOKEN
from hil.ocpp.scripted import ScriptedChargePoint

from .test_core import C, authorize, booted, charging, start, status, stop

T = 10.0


def _operator(cp: ScriptedChargePoint) -> Operator:
    if cp.operator is None:
        pytest.skip("the CSMS under test has no operator seam: set dut.control.adapter to command")
    return cp.operator


async def _remote_started(cp: ScriptedChargePoint) -> None:
    await _operator(cp).remote_start(C, VALID_TOKEN)
    await cp.expect("RemoteStartTransaction", {"idTag": VALID_TOKEN}, timeout=T)


@octt("TC_010_CSMS")
async def test_tc_010_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "cable first: StatusNotification Preparing"):
        await status(scripted16, C, "Preparing")
    with step(3, "the operator starts remotely: RemoteStartTransaction with the idTag, answered Accepted"):
        await _remote_started(scripted16)
    with step(5, "Authorize, StartTransaction accepted, Charging"):
        await authorize(scripted16, VALID_TOKEN, "Accepted")
        await start(scripted16, VALID_TOKEN)
        await status(scripted16, C, "Charging")


@octt("TC_011_1_CSMS")
async def test_tc_011_1_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "remote start first: RemoteStartTransaction, answered Accepted"):
        await _remote_started(scripted16)
    with step(3, "Authorize accepted, Preparing; cable in: StartTransaction accepted, Charging"):
        await authorize(scripted16, VALID_TOKEN, "Accepted")
        await status(scripted16, C, "Preparing")
        await start(scripted16, VALID_TOKEN)
        await status(scripted16, C, "Charging")


@octt("TC_011_2_CSMS")
async def test_tc_011_2_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "RemoteStartTransaction, answered Accepted; Authorize accepted; Preparing"):
        await _remote_started(scripted16)
        await authorize(scripted16, VALID_TOKEN, "Accepted")
        await status(scripted16, C, "Preparing")
    with step(7, "no cable before the connection timeout: StatusNotification Available acknowledged"):
        await status(scripted16, C, "Available")


@octt("TC_012_CSMS")
async def test_tc_012_csms(scripted16: ScriptedChargePoint) -> None:
    tx = await charging(scripted16)
    with step(1, "the operator stops remotely: RemoteStopTransaction for the running transaction"):
        await _operator(scripted16).remote_stop(tx)
        await scripted16.expect("RemoteStopTransaction", {"transactionId": tx}, timeout=T)
    with step(3, "StopTransaction reason Remote, Finishing, Available acknowledged"):
        await stop(scripted16, tx, "Remote")
        await status(scripted16, C, "Finishing")
        await status(scripted16, C, "Available")


async def _reset(cp: ScriptedChargePoint, kind: str) -> None:
    await booted(cp)
    with step(1, f"the operator resets: Reset type {kind}"):
        await _operator(cp).reset(kind)
        await cp.expect("Reset", {"type": kind}, timeout=T)
    with step(3, "the charge point reboots (a new connection): BootNotification answered Accepted; Available"):
        await cp.reconnect()
        await booted(cp)


@octt("TC_013_CSMS")
async def test_tc_013_csms(scripted16: ScriptedChargePoint) -> None:
    await _reset(scripted16, "Hard")


@octt("TC_014_CSMS")
async def test_tc_014_csms(scripted16: ScriptedChargePoint) -> None:
    await _reset(scripted16, "Soft")


@octt("TC_017_1_CSMS")
async def test_tc_017_1_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "the operator unlocks: UnlockConnector for the connector, answered Unlocked"):
        await _operator(scripted16).unlock(C)
        await scripted16.expect("UnlockConnector", {"connectorId": C}, timeout=T)


@octt("TC_018_1_CSMS")
async def test_tc_018_1_csms(scripted16: ScriptedChargePoint) -> None:
    tx = await charging(scripted16)
    with step(1, "UnlockConnector during the session, answered Unlocked"):
        await _operator(scripted16).unlock(C)
        await scripted16.expect("UnlockConnector", {"connectorId": C}, timeout=T)
    with step(3, "Finishing, StopTransaction reason UnlockCommand, Available acknowledged"):
        await status(scripted16, C, "Finishing")
        await stop(scripted16, tx, "UnlockCommand")
        await status(scripted16, C, "Available")


@octt("TC_019_1_CSMS")
async def test_tc_019_1_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "the operator reads the configuration: GetConfiguration without keys"):
        await _operator(scripted16).get_configuration()
        request = await scripted16.expect("GetConfiguration", timeout=T)
        if request.get("key"):
            raise ConformanceFailure(f"GetConfiguration asked for keys {request['key']}, expected none (all)")


@octt("TC_019_2_CSMS")
async def test_tc_019_2_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "GetConfiguration of SupportedFeatureProfiles"):
        await _operator(scripted16).get_configuration("SupportedFeatureProfiles")
        await scripted16.expect("GetConfiguration", {"key": ["SupportedFeatureProfiles"]}, timeout=T)


@octt("TC_021_CSMS")
async def test_tc_021_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "ChangeConfiguration MeterValueSampleInterval = 60, answered Accepted"):
        await _operator(scripted16).change_configuration("MeterValueSampleInterval", "60")
        await scripted16.expect("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "60"}, timeout=T)


@octt("TC_061_CSMS")
async def test_tc_061_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "the operator clears the authorization cache: ClearCache, answered Accepted"):
        await _operator(scripted16).clear_cache()
        await scripted16.expect("ClearCache", timeout=T)


def _schedule_6a(purpose: str, transaction: int | None = None) -> dict:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    profile: dict = {
        "chargingProfileId": 61, "stackLevel": 0, "chargingProfilePurpose": purpose, "chargingProfileKind": "Absolute",
        "validFrom": now.isoformat().replace("+00:00", "Z"),
        "validTo": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "chargingSchedule": {"startSchedule": now.isoformat().replace("+00:00", "Z"), "duration": 3600,
                             "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}}
    if transaction is not None:
        profile["transactionId"] = transaction
    return profile


def _is_6(limit: object) -> bool:
    return limit in (6, 6.0, 6000, 6000.0)


@octt("TC_056_CSMS")
async def test_tc_056_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "SetChargingProfile TxDefaultProfile Absolute, validity set, first period 6 A (or 6000 W)"):
        await _operator(scripted16).set_charging_profile(C, _schedule_6a("TxDefaultProfile"))
        await scripted16.expect("SetChargingProfile", {"csChargingProfiles": {
            "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
            "validFrom": lambda v: bool(v), "validTo": lambda v: bool(v),
            "chargingSchedule": {"chargingSchedulePeriod": lambda ps: ps[0]["startPeriod"] == 0 and _is_6(ps[0]["limit"])},
        }}, timeout=T)


@octt("TC_057_CSMS")
async def test_tc_057_csms(scripted16: ScriptedChargePoint) -> None:
    tx = await charging(scripted16)
    with step(1, "SetChargingProfile TxProfile for the running transaction, first period 6 A (or 6000 W)"):
        await _operator(scripted16).set_charging_profile(C, _schedule_6a("TxProfile", tx))
        await scripted16.expect("SetChargingProfile", {"connectorId": C, "csChargingProfiles": {
            "chargingProfilePurpose": "TxProfile", "transactionId": tx,
            "chargingSchedule": {"chargingSchedulePeriod": lambda ps: _is_6(ps[0]["limit"])},
        }}, timeout=T)


async def _still_answers(cp: ScriptedChargePoint) -> None:
    """After a rejection the CSMS keeps the connection and answers the next request."""
    beat = await cp.call("Heartbeat", {})
    if "currentTime" not in beat:
        raise ConformanceFailure(f"Heartbeat after the rejection answered {beat}")


async def _rejected(cp: ScriptedChargePoint, action: str, answer: dict, start_it, match: dict | None = None) -> None:  # type: ignore[no-untyped-def]
    cp.answer(action, answer)
    await start_it(_operator(cp))
    await cp.expect(action, match, timeout=T)
    await _still_answers(cp)


@octt("TC_007_CSMS")
async def test_tc_007_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "Preparing; StartTransaction with an idTag from the charge point's cache (no Authorize): Accepted"):
        await status(scripted16, C, "Preparing")
        await start(scripted16, VALID_TOKEN)
    with step(5, "StatusNotification Charging"):
        await status(scripted16, C, "Charging")


@octt("TC_024_CSMS")
async def test_tc_024_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "Preparing, then Faulted with errorCode ConnectorLockFailure: both acknowledged"):
        await status(scripted16, C, "Preparing")
        await status(scripted16, C, "Faulted", error="ConnectorLockFailure")
        await _still_answers(scripted16)


@octt("TC_026_CSMS")
async def test_tc_026_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "RemoteStartTransaction answered Rejected: the CSMS carries on"):
        await _rejected(scripted16, "RemoteStartTransaction", {"status": "Rejected"},
                        lambda op: op.remote_start(C, VALID_TOKEN))


@octt("TC_028_CSMS")
async def test_tc_028_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "RemoteStopTransaction of an unknown transaction answered Rejected: the CSMS carries on"):
        await _rejected(scripted16, "RemoteStopTransaction", {"status": "Rejected"}, lambda op: op.remote_stop(987654))


@octt("TC_030_CSMS")
async def test_tc_030_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "UnlockConnector answered UnlockFailed: the CSMS carries on"):
        await _rejected(scripted16, "UnlockConnector", {"status": "UnlockFailed"}, lambda op: op.unlock(C),
                        {"connectorId": C})


@octt("TC_031_CSMS")
async def test_tc_031_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "UnlockConnector of an unknown connector answered NotSupported: the CSMS carries on"):
        await _rejected(scripted16, "UnlockConnector", {"status": "NotSupported"}, lambda op: op.unlock(C + 1))


@octt("TC_040_1_CSMS")
async def test_tc_040_1_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "ChangeConfiguration of a key the charge point does not know answered NotSupported"):
        await _rejected(scripted16, "ChangeConfiguration", {"status": "NotSupported"},
                        lambda op: op.change_configuration("Testing", "true"), {"key": "Testing"})


@octt("TC_040_2_CSMS")
async def test_tc_040_2_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "ChangeConfiguration MeterValueSampleInterval = -1 answered Rejected"):
        await _rejected(scripted16, "ChangeConfiguration", {"status": "Rejected"},
                        lambda op: op.change_configuration("MeterValueSampleInterval", "-1"),
                        {"key": "MeterValueSampleInterval", "value": "-1"})


@octt("TC_066_CSMS")
async def test_tc_066_csms(scripted16: ScriptedChargePoint) -> None:
    await charging(scripted16)
    with step(1, "GetCompositeSchedule for the connector, answered Accepted with a schedule"):
        scripted16.answer("GetCompositeSchedule", lambda p: {
            "status": "Accepted", "connectorId": p["connectorId"], "scheduleStart": datetime.now(timezone.utc).isoformat(
                timespec="seconds").replace("+00:00", "Z"),
            "chargingSchedule": {"duration": p["duration"], "chargingRateUnit": "A",
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}})
        await _operator(scripted16).get_composite_schedule(C, 400)
        await scripted16.expect("GetCompositeSchedule", {"connectorId": C, "duration": 400}, timeout=T)
        await _still_answers(scripted16)


@octt("TC_067_CSMS")
async def test_tc_067_csms(scripted16: ScriptedChargePoint) -> None:
    await booted(scripted16)
    with step(1, "a profile set, then ClearChargingProfile of it by id, answered Accepted"):
        await _operator(scripted16).set_charging_profile(C, _schedule_6a("TxDefaultProfile"))
        await scripted16.expect("SetChargingProfile", timeout=T)
        await _operator(scripted16).clear_charging_profile(61)
        await scripted16.expect("ClearChargingProfile", {"id": 61}, timeout=T)
