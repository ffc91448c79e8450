"""OCPP-J transport: subprotocol negotiation, security profiles 1 and 2, malformed frames answered with the
error codes OCPP-J prescribes, the emulator's reconnect back-off and offline queue retries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hil.ocpp.charge_point import ChargePoint
from hil.ocpp.csms import CSMS
from hil.ocpp.outlet import Outlet
from hil.ocpp.rpc import CallError
from hil.ocpp.schemas import SchemaViolation, error_code, validate
from hil.ocpp.tls import client_context, make_certificates, server_context
from hil.ocpp.uplink import BackOff
from hil.plant import Plant, Port

BOOT16 = {"chargePointVendor": "evhil", "chargePointModel": "test"}


async def _exchange(ws, frame: str) -> list:
    await ws.send(frame)
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


@pytest.mark.parametrize(("version", "frame", "code"), [
    ("1.6", "this is not json", "FormationViolation"),
    ("2.0.1", "this is not json", "RpcFrameworkError"),
    ("1.6", '[2, "m1", "FooBar", {}]', "NotImplemented"),
    ("2.0.1", '[2, "m1", "FooBar", {}]', "NotImplemented"),
    ("1.6", '[2, "m1", "Reset", {"type": "Hard"}]', "NotSupported"),
    ("1.6", '[2, "m1", "BootNotification", {"chargePointModel": "x"}]', "OccurenceConstraintViolation"),
    ("2.0.1", '[2, "m1", "BootNotification", {"reason": "PowerUp"}]', "OccurrenceConstraintViolation"),
    ("1.6", '[2, "m1", "BootNotification", {"chargePointVendor": 5, "chargePointModel": "x"}]', "TypeConstraintViolation"),
    ("1.6", '[2, "m1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}]',
     "PropertyConstraintViolation"),
    ("1.6", '[2, "m1", "Heartbeat", {"extra": 1}]', "FormationViolation"),
    ("2.0.1", '[2, "m1", "Heartbeat", {"extra": 1}]', "FormatViolation"),
    ("2.0.1", '[7, "m1", "Heartbeat", {}]', "MessageTypeNotSupported"),
    ("1.6", '[2, "m1", "Heartbeat"]', "FormationViolation"),
])
async def test_malformed_frames_get_the_right_callerror_and_the_connection_survives(version, frame, code) -> None:
    async with CSMS(versions=(version,)) as csms:
        sub = "ocpp1.6" if version == "1.6" else "ocpp2.0.1"
        async with connect(csms.url + "CP1", subprotocols=[sub]) as ws:  # type: ignore[list-item]
            answer = await _exchange(ws, frame)
            assert answer[0] == 4 and answer[2] == code, answer
            assert answer[1] in ("m1", "-1")
            ok = await _exchange(ws, '[2, "m2", "Heartbeat", {}]')
            assert ok[0] == 3 and ok[1] == "m2" and "currentTime" in ok[2]
        assert csms.session("CP1").findings, "the violation is recorded as a finding"


async def test_subprotocol_mismatch_is_refused() -> None:
    async with CSMS(versions=("2.0.1",)) as csms:
        async with connect(csms.url + "CP1", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol is None
            with pytest.raises(Exception):
                await asyncio.wait_for(ws.recv(), 5)
        assert "subprotocol" in csms.session("CP1").findings[0]


async def test_basic_auth_and_tls(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    password = "evhil-password-0123456789"
    async with CSMS(charge_points={"CP1": password}, tls=server_context(certs)) as csms:
        assert csms.url.startswith("wss://127.0.0.1:")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(csms.url + "CP1", subprotocols=["ocpp1.6"], ssl=client_context(certs.ca)):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            async with connect(csms.url + "OTHER", subprotocols=["ocpp1.6"], ssl=client_context(certs.ca)):  # type: ignore[list-item]
                pass
        plant = Plant([Port("p1")])
        cp = ChargePoint("CP1", csms.url, [Outlet(plant, "p1")], password=password, tls=client_context(certs.ca))
        async with cp:
            session = csms.session("CP1")
            await session.wait_connected(10)
            await session.expect("BootNotification", timeout=10)


async def test_reconnect_back_off_doubles_and_the_queue_retries() -> None:
    async with CSMS(versions=("1.6",)) as csms:
        plant = Plant([Port("p1")])
        cp = ChargePoint("CP1", csms.url, [Outlet(plant, "p1")], backoff=BackOff(0.2, 0.0, 2),
                         configure={"TransactionMessageAttempts": "3", "TransactionMessageRetryInterval": "1"})
        async with cp:
            session = csms.session("CP1")
            await session.expect("BootNotification", timeout=10)
            await session.expect("StatusNotification", {"connectorId": 1}, timeout=10)
            # back-off: refused attempts wait 0.2, 0.4, 0.8, 0.8 s (doubled at most twice)
            csms.refuse(2.0)
            await session.drop()
            await session.wait_connected(10, after=1)
            await asyncio.sleep(0.3)  # the charge point is online once its side of the handshake completes
            gaps = [b - a for a, b in zip(cp.uplink.attempt_times[1:], cp.uplink.attempt_times[2:])]
            assert len(gaps) >= 3
            assert gaps[0] == pytest.approx(0.4, abs=0.15) and gaps[1] == pytest.approx(0.8, abs=0.15)
            assert all(g == pytest.approx(0.8, abs=0.15) for g in gaps[2:]), gaps
            # a transaction message the CSMS fails to process: resent after 1 s, then 2 s, then dropped
            session.answer("StartTransaction", CallError("InternalError"), CallError("InternalError"),
                           CallError("InternalError"))
            await cp.plug_in(1)
            await cp.present_token("EVHILVALID01", 1)
            frames = [await session.expect_frame("StartTransaction", timeout=10) for _ in range(3)]
            assert frames[1].time - frames[0].time == pytest.approx(1.0, abs=0.3)
            assert frames[2].time - frames[1].time == pytest.approx(2.0, abs=0.3)
            await session.expect_none("StartTransaction", within=3.5)
            assert not cp.uplink.queue


def test_every_bundled_schema_compiles_and_maps_errors() -> None:
    validate("2.0.1", "TransactionEvent", "request", {
        "eventType": "Started", "timestamp": "2026-12-01T10:00:00Z", "triggerReason": "CablePluggedIn",
        "seqNo": 0, "transactionInfo": {"transactionId": "t1"}})
    with pytest.raises(SchemaViolation) as bad:
        validate("1.6", "MeterValues", "request", {"connectorId": 1, "meterValue": [
            {"timestamp": "yesterday", "sampledValue": [{"value": "1"}]}]})
    assert error_code("1.6", bad.value) == "PropertyConstraintViolation"
    validate("1.6", "SetChargingProfile", "request", {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 7.3}]}}})  # 7.3 is not a binary multiple of 0.1: still valid
