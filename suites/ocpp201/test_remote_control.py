"""OCPP 2.0.1 block F, remote control, charging station under test: remote start and stop, unlock, trigger
message (OCTT 2.0.1 Part 6 §F).
"""

from __future__ import annotations

import asyncio
import time

from hil.ocpp import states201 as st
from hil.ocpp.charging_station import offset
from hil.ocpp.conformance import ConformanceFailure, octt, show, step
from hil.ocpp.file_transfer import FileServer, signed_firmware
from hil.ocpp.fixtures import ChargerUnderTest

S = st.SETTINGS
T = S.message_timeout


@octt("TC_F_01_CS")
async def test_tc_f_01_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session)
    await st.ev_connected_pre_session(booted201, S)
    await st.authorized_remote(booted201, S)
    await st.energy_transfer_started(booted201, S)


@octt("TC_F_02_CS")
async def test_tc_f_02_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session, AuthCtrlr__AuthorizeRemoteStart=True)
    await st.authorized_remote(booted201, S)  # with AuthorizeRemoteStart the AuthorizeRequest is required
    await st.energy_transfer_started(booted201, S)


@octt("TC_F_03_CS")
async def test_tc_f_03_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session, AuthCtrlr__AuthorizeRemoteStart=False)
    booted201.session.forbid("Authorize")
    await st.authorized_remote(booted201, S)
    await st.energy_transfer_started(booted201, S)


@octt("TC_F_04_CS")
async def test_tc_f_04_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    timeout = S.ev_connection_timeout
    await st.auth_defaults(booted201.session, TxCtrlr__EVConnectionTimeOut=timeout, TxCtrlr__TxStartPoint="Authorized")
    await st.authorized_remote(booted201, S)
    started = time.time()
    with step(1, f"no EV within EVConnectionTimeOut ({timeout} s): TransactionEvent Ended EVConnectTimeout"):
        frame = await session.expect_frame("TransactionEvent", st.event_match(
            event_type="Ended", trigger="EVConnectTimeout"), timeout=timeout + T)
        if abs(frame.time - started - timeout) > S.max_time_deviation + 0.5:
            raise ConformanceFailure(f"the transaction ended {frame.time - started:.2f} s after the remote start, "
                                     f"EVConnectionTimeOut is {timeout} s")
        reason = frame.payload["transactionInfo"].get("stoppedReason")
        if reason not in (None, "Timeout"):
            raise ConformanceFailure(f"stoppedReason {reason}, expected Timeout")
    with step(3, "the EVSE accepts a remote start again"):
        await st.authorized_remote(booted201, S)


@octt("TC_F_05_CS")
async def test_tc_f_05_cs(booted201: ChargerUnderTest) -> None:
    tx = await st.charging(booted201, S)
    with step(1, "UnlockConnector during the authorised transaction: OngoingAuthorizedTransaction"):
        await booted201.session.call_expect("UnlockConnector", {"evseId": S.evse, "connectorId": S.connector},
                                            "OngoingAuthorizedTransaction")
    with step(2, "the transaction goes on"):
        await booted201.session.expect_none("TransactionEvent", within=1.0, match={"eventType": "Ended"})
        if st.open_transaction(booted201.session, S.evse) != tx:
            raise ConformanceFailure("the transaction did not go on")


@octt("TC_F_07_CS")
async def test_tc_f_07_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "UnlockConnector without a cable: Unlocked"):
        await booted201.session.call_expect("UnlockConnector", {"evseId": S.evse, "connectorId": S.connector},
                                            "Unlocked")


@octt("TC_F_10_CS")
async def test_tc_f_10_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "UnlockConnector of connector 999: UnknownConnector"):
        await booted201.session.call_expect("UnlockConnector", {"evseId": S.evse, "connectorId": 999},
                                            "UnknownConnector")


@octt("TC_F_08_CS")
async def test_tc_f_08_cs(booted201: ChargerUnderTest) -> None:
    tx = await st.charging(booted201, S)
    await asyncio.sleep(S.transaction_duration)
    _, stop = await st.tx_points(booted201.session)
    event = await st.stop_authorized_remote(booted201, tx, S)
    with step(3, "with stop point Authorized: Ended, stoppedReason Remote"):
        if "Authorized" in stop and (event["eventType"], event["transactionInfo"].get("stoppedReason")) != (
                "Ended", "Remote"):
            raise ConformanceFailure(f"TransactionEvent {show(event)}, expected Ended with stoppedReason Remote")


@octt("TC_F_09_CS")
async def test_tc_f_09_cs(booted201: ChargerUnderTest) -> None:
    tx = await st.charging(booted201, S)
    with step(1, "RequestStopTransaction of another transaction id: Rejected"):
        await booted201.session.call_expect("RequestStopTransaction", {"transactionId": "not-" + tx[:30]}, "Rejected")
    with step(2, "the transaction goes on"):
        await booted201.session.expect_none("TransactionEvent", within=1.0, match={"eventType": "Ended"})


@octt("TC_F_11_CS")
async def test_tc_f_11_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "TriggerMessage MeterValues for one EVSE: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "MeterValues",
                                                               "evse": {"id": S.evse}}, "Accepted")
    with step(3, "MeterValues of that EVSE, context Trigger"):
        await booted201.session.expect("MeterValues", {"evseId": S.evse, "meterValue": [
            {"sampledValue": lambda v: v[0].get("context") == "Trigger"}]}, timeout=T)


@octt("TC_F_12_CS")
async def test_tc_f_12_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "TriggerMessage MeterValues without an EVSE: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "MeterValues"}, "Accepted")
    with step(3, "MeterValues of every EVSE, context Trigger"):
        for evse in range(1, booted201.connectors + 1):
            await booted201.session.expect("MeterValues", {"evseId": evse, "meterValue": [
                {"sampledValue": lambda v: v[0].get("context") == "Trigger"}]}, timeout=T)


def _triggered(evse: int) -> dict:
    return {**st.event_match(event_type="Updated", trigger="Trigger", state="Charging"),
            "meterValue": [{"sampledValue": lambda v: v[0].get("context") == "Trigger"}],
            "evse": lambda e: e.get("id") == evse}


@octt("TC_F_13_CS")
async def test_tc_f_13_cs(booted201: ChargerUnderTest) -> None:
    await st.charging(booted201, S)
    with step(1, "TriggerMessage TransactionEvent for the EVSE: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "TransactionEvent",
                                                               "evse": {"id": S.evse}}, "Accepted")
    with step(3, "TransactionEvent Updated, Trigger, Charging, meter values with context Trigger"):
        match = _triggered(S.evse)
        match.pop("evse")  # evse may be omitted here
        await booted201.session.expect("TransactionEvent", match, timeout=T)


@octt("TC_F_14_CS")
async def test_tc_f_14_cs(booted201: ChargerUnderTest) -> None:
    evses = list(range(1, min(booted201.connectors, 2) + 1))
    for evse in evses:
        s = st.Settings(evse=evse)
        await st.charging(booted201, s)
    with step(1, "TriggerMessage TransactionEvent without an EVSE: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "TransactionEvent"}, "Accepted")
    with step(3, "a triggered TransactionEvent for every EVSE with a transaction"):
        for evse in evses:
            tx = st.open_transaction(booted201.session, evse)
            match = _triggered(evse)
            match.pop("evse")
            match["transactionInfo"]["transactionId"] = tx
            await booted201.session.expect("TransactionEvent", match, timeout=T)


@octt("TC_F_15_CS")
async def test_tc_f_15_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "TriggerMessage LogStatusNotification: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "LogStatusNotification"}, "Accepted")
    with step(3, "LogStatusNotification Idle"):
        await booted201.session.expect("LogStatusNotification", {"status": "Idle"}, timeout=T)


@octt("TC_F_16_CS")
async def test_tc_f_16_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    async with FileServer(store_delay=3.0) as server:
        with step(1, "GetLog DiagnosticsLog to the test system's upload location: Accepted"):
            await session.call_expect("GetLog", {"logType": "DiagnosticsLog", "requestId": 77,
                                                 "log": {"remoteLocation": server.url("/logs/")}}, "Accepted")
        with step(3, "LogStatusNotification Uploading"):
            await session.expect("LogStatusNotification", {"status": "Uploading", "requestId": 77}, timeout=T)
        with step(5, "TriggerMessage LogStatusNotification while uploading: Accepted"):
            await session.call_expect("TriggerMessage", {"requestedMessage": "LogStatusNotification"}, "Accepted")
        with step(7, "LogStatusNotification Uploading again"):
            await session.expect("LogStatusNotification", {"status": "Uploading", "requestId": 77}, timeout=T)
        with step("evhil", "the upload completes: Uploaded, and the log arrived"):
            await session.expect("LogStatusNotification", {"status": "Uploaded", "requestId": 77}, timeout=T)
            if not any(path.startswith("/logs/") and body for path, body in server.received.items()):
                raise ConformanceFailure(f"nothing was uploaded to {server.url('/logs/')}")


@octt("TC_F_19_CS")
async def test_tc_f_19_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    image, certificate, signature = signed_firmware()
    async with FileServer(rate=len(image) / 3.0, files={"/firmware.bin": image}) as server:
        with step(1, "UpdateFirmware with a signed image, retrieveDateTime 2 h ago: Accepted"):
            await session.call_expect("UpdateFirmware", {"requestId": 88, "firmware": {
                "location": server.url("/firmware.bin"), "retrieveDateTime": offset(-7200),
                "signingCertificate": certificate, "signature": signature}}, "Accepted")
        with step(3, "FirmwareStatusNotification Downloading with the requestId"):
            await session.expect("FirmwareStatusNotification", {"status": "Downloading", "requestId": 88}, timeout=T)
        with step(5, "TriggerMessage FirmwareStatusNotification while downloading: Accepted"):
            await session.call_expect("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}, "Accepted")
        with step(7, "FirmwareStatusNotification Downloading again, with the requestId"):
            await session.expect("FirmwareStatusNotification", {"status": "Downloading", "requestId": 88}, timeout=T)
        with step("evhil", "the download completes, the signature verifies, the image is installed"):
            for status in ("Downloaded", "SignatureVerified", "Installed"):
                await session.expect("FirmwareStatusNotification", {"status": status, "requestId": 88}, timeout=T)


@octt("TC_F_17_CS")
async def test_tc_f_17_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "TriggerMessage FirmwareStatusNotification with an EVSE (not relevant): Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification",
                                                               "evse": {"id": S.evse}}, "Accepted")
    with step(3, "FirmwareStatusNotification Idle"):
        await booted201.session.expect("FirmwareStatusNotification", {"status": "Idle"}, timeout=T)


@octt("TC_F_18_CS")
async def test_tc_f_18_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "TriggerMessage FirmwareStatusNotification: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"},
                                            "Accepted")
    with step(3, "FirmwareStatusNotification Idle"):
        await booted201.session.expect("FirmwareStatusNotification", {"status": "Idle"}, timeout=T)


@octt("TC_F_20_CS")
async def test_tc_f_20_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, OCPPCommCtrlr__HeartbeatInterval=300)
    booted201.session.consume_all()
    with step(1, "TriggerMessage Heartbeat: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "Heartbeat"}, "Accepted")
    with step(3, "a Heartbeat follows"):
        await booted201.session.expect("Heartbeat", timeout=T)


@octt("TC_F_23_CS")
async def test_tc_f_23_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "TriggerMessage StatusNotification for the idle connector: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {
            "id": S.evse, "connectorId": S.connector}}, "Accepted")
    with step(3, "StatusNotification Available"):
        await booted201.session.expect("StatusNotification", st.status_match(S, "Available"), timeout=T)


@octt("TC_F_24_CS")
async def test_tc_f_24_cs(booted201: ChargerUnderTest) -> None:
    await st.ev_connected_pre_session(booted201, S)
    with step(1, "TriggerMessage StatusNotification for the occupied connector: Accepted"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {
            "id": S.evse, "connectorId": S.connector}}, "Accepted")
    with step(3, "StatusNotification Occupied"):
        await booted201.session.expect("StatusNotification", st.status_match(S, "Occupied"), timeout=T)


@octt("TC_F_26_CS")
async def test_tc_f_26_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "TriggerMessage BootNotification once Accepted: Rejected"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "BootNotification"}, "Rejected")
    with step(2, "no BootNotification follows"):
        await booted201.session.expect_none("BootNotification", within=1.5)


@octt("TC_F_27_CS")
async def test_tc_f_27_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "TriggerMessage SignCombinedCertificate: NotImplemented"):
        await booted201.session.call_expect("TriggerMessage", {"requestedMessage": "SignCombinedCertificate"},
                                            "NotImplemented")
