"""OCPP 1.6 Remote Trigger, charge point under test (OCTT 1.6 §2.21)."""

from __future__ import annotations

from hil.ocpp import states16 as st
from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.rpc import CallError

S = st.SETTINGS
C = S.connector
T = S.message_timeout


async def _trigger(cp: ChargerUnderTest, what: str, connector: int | None = None,
                   allowed: tuple[str, ...] = ("Accepted",)) -> str:
    request: dict = {"requestedMessage": what}
    if connector is not None:
        request["connectorId"] = connector
    answer = await cp.session.call("TriggerMessage", request)
    if answer["status"] not in allowed:
        raise ConformanceFailure(f"TriggerMessage {what} answered {answer['status']}, expected {' or '.join(allowed)}")
    return answer["status"]


@octt("TC_054_CS")
async def test_tc_054_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "TriggerMessage MeterValues for the connector: Accepted, MeterValues"):
        await _trigger(cp, "MeterValues", C)
        await session.expect("MeterValues", {"connectorId": C}, timeout=T)
    with step(5, "TriggerMessage Heartbeat: Accepted, Heartbeat"):
        await _trigger(cp, "Heartbeat")
        await session.expect("Heartbeat", timeout=T)
    with step(9, "TriggerMessage StatusNotification for the connector: Accepted, StatusNotification"):
        await _trigger(cp, "StatusNotification", C)
        await session.expect("StatusNotification", {"connectorId": C}, timeout=T)
    with step(13, "TriggerMessage DiagnosticsStatusNotification: Accepted, status Idle"):
        await _trigger(cp, "DiagnosticsStatusNotification")
        await session.expect("DiagnosticsStatusNotification", {"status": "Idle"}, timeout=T)
    with step(17, "TriggerMessage FirmwareStatusNotification: Accepted (then status Idle) or NotImplemented"):
        if await _trigger(cp, "FirmwareStatusNotification", allowed=("Accepted", "NotImplemented")) == "Accepted":
            await session.expect("FirmwareStatusNotification", {"status": "Idle"}, timeout=T)


@octt("TC_055_CS")
async def test_tc_055_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    connectors = int(await st.get_configuration(session, "NumberOfConnectors") or cp.connectors)
    with step(1, f"TriggerMessage MeterValues for connector {connectors + 1} (does not exist): Rejected"):
        session.consume_all()
        try:
            await _trigger(cp, "MeterValues", connectors + 1, allowed=("Rejected",))
        except CallError:
            pass
        await session.expect_none("MeterValues", within=1.0)
