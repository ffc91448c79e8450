"""OCPP 2.0.1 block E, transactions, charging station under test: start and stop points, local start and
stop, transaction status, offline behaviour and the retry of transaction messages (OCTT 2.0.1 Part 6 §E).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from hil.ocpp import states201 as st
from hil.ocpp.conformance import ConformanceFailure, octt, show, step
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.rpc import NO_REPLY, CallError, Frame

S = st.SETTINGS
T = S.message_timeout
UNKNOWN_TOKEN = "EVHILUNKNOWN9"


def _events_since(cs: ChargerUnderTest, index: int) -> list[dict[str, Any]]:
    return [f.payload for f in cs.session.trace.frames[index:]
            if f.is_call and f.direction == "received" and f.action == "TransactionEvent"]


def _seq_continuous(events: list[dict[str, Any]], tx: str) -> None:
    seqs = [e["seqNo"] for e in events if e["transactionInfo"]["transactionId"] == tx]
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False:
        raise ConformanceFailure(f"seqNo of transaction {tx} not continuous: {seqs}")


async def _offline(cs: ChargerUnderTest, threshold: int, wait: int) -> None:
    await st.set_variables(cs.session, OCPPCommCtrlr__OfflineThreshold=threshold,
                           OCPPCommCtrlr__RetryBackOffWaitMinimum=wait, OCPPCommCtrlr__RetryBackOffRandomRange=0)


# -- start points ----------------------------------------------------------------------------------------
@octt("TC_E_01_CS")
async def test_tc_e_01_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session, TxCtrlr__TxStartPoint="PowerPathClosed")
    await st.authorized_local(booted201, S)
    with step(1, "EVConnectedPreSession: the transaction starts when the power path closes"):
        await booted201.control.plug_in(S.evse)
        await booted201.session.expect("StatusNotification", st.status_match(S, "Occupied"), timeout=T)
        await booted201.session.expect("TransactionEvent", st.event_match(
            event_type="Started", state=("EVConnected", "SuspendedEVSE", "Charging")), timeout=T)


@octt("TC_E_02_CS")
async def test_tc_e_02_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session, TxCtrlr__TxStartPoint="EnergyTransfer")
    await st.authorized_local(booted201, S)
    with step(1, "plug in: connector Occupied"):
        await booted201.control.plug_in(S.evse)
        await booted201.session.expect("StatusNotification", st.status_match(S, "Occupied"), timeout=T)
    with step(3, "TransactionEvent Started when energy flows, with the idToken and the EVSE"):
        await booted201.session.expect("TransactionEvent", {**st.event_match(
            event_type="Started", trigger=("ChargingStateChanged", "Authorized"), state="Charging",
            token=S.valid_token), "evse": {"id": S.evse, "connectorId": S.connector}}, timeout=T)


@octt("TC_E_09_CS")
async def test_tc_e_09_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStartPoint="EVConnected")
    with step(1, "plug in: connector Occupied"):
        await booted201.control.plug_in(S.evse)
        await booted201.session.expect("StatusNotification", st.status_match(S, "Occupied"), timeout=T)
    with step(3, "TransactionEvent Started at plug-in, EVConnected, with the EVSE"):
        await booted201.session.expect("TransactionEvent", {**st.event_match(
            event_type="Started", trigger=("CablePluggedIn", "ChargingStateChanged"), state="EVConnected"),
            "evse": {"id": S.evse, "connectorId": S.connector}}, timeout=T)


@octt("TC_E_10_CS")
async def test_tc_e_10_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session, TxCtrlr__TxStartPoint="Authorized")
    with step(1, "present the idToken: AuthorizeRequest"):
        await booted201.control.present_token(S.valid_token, S.evse)
        await booted201.session.expect("Authorize", {"idToken": {"idToken": S.valid_token}}, timeout=T)
    with step(3, "TransactionEvent Started, Authorized, with the idToken"):
        await booted201.session.expect("TransactionEvent", st.event_match(
            event_type="Started", trigger="Authorized", token=S.valid_token), timeout=T)


@octt("TC_E_13_CS")
async def test_tc_e_13_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session, TxCtrlr__TxStartPoint="Authorized")
    with step(1, "RequestStartTransaction: Started with RemoteStart and the remoteStartId"):
        await booted201.session.call_expect("RequestStartTransaction", {
            "idToken": st.token(S), "evseId": S.evse, "remoteStartId": 4242}, "Accepted")
        await booted201.session.expect("TransactionEvent", {**st.event_match(
            event_type="Started", trigger="RemoteStart", token=S.valid_token),
            "transactionInfo": {"remoteStartId": 4242}}, timeout=T)


# -- local start -----------------------------------------------------------------------------------------
@octt("TC_E_03_CS")
async def test_tc_e_03_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session)
    await st.ev_connected_pre_session(booted201, S)
    await st.authorized_local(booted201, S)
    await st.energy_transfer_started(booted201, S)


@octt("TC_E_04_CS")
async def test_tc_e_04_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session)
    await st.authorized_local(booted201, S)
    await st.energy_transfer_started(booted201, S)


@octt("TC_E_05_CS")
async def test_tc_e_05_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    timeout = S.ev_connection_timeout
    await st.auth_defaults(booted201.session, TxCtrlr__EVConnectionTimeOut=timeout, AuthCacheCtrlr__Enabled=False,
                         AuthCtrlr__LocalPreAuthorize=False)
    start, stop = await st.tx_points(session)
    await st.authorized_local(booted201, S)
    with step(1, f"no EV within {timeout} s: the authorisation expires"):
        if "Authorized" in start:
            kind = "Ended" if "Authorized" in stop else "Updated"
            event = await session.expect("TransactionEvent", st.event_match(event_type=kind, trigger="EVConnectTimeout"),
                                         timeout=timeout + T)
            if kind == "Ended" and event["transactionInfo"].get("stoppedReason") != "Timeout":
                raise ConformanceFailure(f"stoppedReason {event['transactionInfo'].get('stoppedReason')}, expected Timeout")
        else:
            await asyncio.sleep(timeout + S.max_time_deviation)
    with step(3, "the token is authorised again and charging starts"):
        await st.authorized_local(booted201, S)
        await st.energy_transfer_started(booted201, S)


@octt("TC_E_52_CS")
async def test_tc_e_52_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, AuthCtrlr__Enabled=True, AuthCtrlr__DisableRemoteAuthorization=True)
    with step(1, "present a token in neither cache nor local list: no AuthorizeRequest, no transaction"):
        await booted201.control.present_token(UNKNOWN_TOKEN, S.evse)
        await session.expect_none("Authorize", within=2.0)
        await booted201.control.plug_in(S.evse)
        await session.expect_none("TransactionEvent", within=1.5, match={"idToken": {"idToken": UNKNOWN_TOKEN}})
        if booted201.emulator is not None and booted201.emulator.charging_state(booted201.emulator.evses[S.evse]) == "Charging":
            raise ConformanceFailure("the EVSE charges for a token it could not authorise")


# -- stop points -----------------------------------------------------------------------------------------
@octt("TC_E_06_CS")
async def test_tc_e_06_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session)
    await st.charging(booted201, S)
    await asyncio.sleep(S.transaction_duration)
    await st.stop_authorized_local(booted201, S)
    ended = await st.ev_disconnected(booted201, S)
    with step("post", "the Ended event: stoppedReason Local or omitted"):
        if ended is not None and ended["transactionInfo"].get("stoppedReason", "Local") != "Local":
            raise ConformanceFailure(f"stoppedReason {ended['transactionInfo']['stoppedReason']}, expected Local")


@octt("TC_E_07_CS")
async def test_tc_e_07_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="PowerPathClosed")
    await st.charging(booted201, S)
    await asyncio.sleep(S.transaction_duration)
    with step(1, "present the token: the power path opens and the transaction ends"):
        await booted201.control.present_token(S.valid_token, S.evse)
        event = await booted201.session.expect("TransactionEvent", st.event_match(event_type="Ended"), timeout=T)
        if event["transactionInfo"].get("stoppedReason", "Local") != "Local":
            raise ConformanceFailure(f"stoppedReason {event['transactionInfo']['stoppedReason']}, expected Local")


@octt("TC_E_35_CS")
async def test_tc_e_35_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="PowerPathClosed")
    tx = await st.charging(booted201, S)
    with step(1, "RequestStopTransaction: Ended, RemoteStop, stoppedReason Remote"):
        await booted201.session.call_expect("RequestStopTransaction", {"transactionId": tx}, "Accepted")
        await booted201.session.expect("TransactionEvent", st.event_match(
            event_type="Ended", trigger="RemoteStop", stopped="Remote", tx=tx), timeout=T)


@octt("TC_E_08_CS")
async def test_tc_e_08_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="EnergyTransfer")
    await st.charging(booted201, S)
    await asyncio.sleep(S.transaction_duration)
    with step(1, "StopAuthorized: the transaction ends as the energy stops"):
        await booted201.control.present_token(S.valid_token, S.evse)
        await booted201.session.expect("TransactionEvent", st.event_match(
            event_type="Ended", stopped=("Local", "Remote")), timeout=T)


@octt("TC_E_14_CS")
async def test_tc_e_14_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="EVConnected")
    tx = await st.charging(booted201, S)
    await st.stop_authorized_local(booted201, S)
    with step(1, "unplug at the station side: connector Available"):
        await booted201.control.unplug(S.evse)
        await booted201.session.expect("StatusNotification", st.status_match(S, "Available"), timeout=T)
    with step(3, "TransactionEvent Ended, EVCommunicationLost, Idle"):
        event = await booted201.session.expect("TransactionEvent", st.event_match(
            event_type="Ended", trigger="EVCommunicationLost", state="Idle", tx=tx), timeout=T)
        if event["transactionInfo"].get("stoppedReason", "Local") not in ("Local", "EVDisconnected"):
            raise ConformanceFailure(f"stoppedReason {event['transactionInfo']['stoppedReason']}, "
                                     "expected Local, EVDisconnected or none")


@octt("TC_E_15_CS")
async def test_tc_e_15_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="Authorized")
    await st.charging(booted201, S)
    await asyncio.sleep(S.transaction_duration)
    with step(1, "present the token: Ended, StopAuthorized, stoppedReason Local"):
        await booted201.control.present_token(S.valid_token, S.evse)
        await booted201.session.expect("TransactionEvent", st.event_match(
            event_type="Ended", trigger="StopAuthorized", stopped="Local"), timeout=T)


@octt("TC_E_21_CS")
async def test_tc_e_21_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="Authorized")
    tx = await st.charging(booted201, S)
    with step(1, "RequestStopTransaction: Accepted; Ended, RemoteStop, stoppedReason Remote"):
        await booted201.session.call_expect("RequestStopTransaction", {"transactionId": tx}, "Accepted")
        await booted201.session.expect("TransactionEvent", st.event_match(
            event_type="Ended", trigger="RemoteStop", stopped="Remote", tx=tx), timeout=T)


@octt("TC_E_39_CS")
async def test_tc_e_39_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    timeout = S.ev_connection_timeout
    await st.auth_defaults(booted201.session, TxCtrlr__TxStopPoint="Authorized,EVConnected", TxCtrlr__EVConnectionTimeOut=timeout)
    start, _ = await st.tx_points(session)
    authorized = time.time()
    await st.authorized_local(booted201, S)
    with step(1, f"no EV within {timeout} s"):
        if "Authorized" in start:
            frame = await session.expect_frame("TransactionEvent", st.event_match(
                event_type="Ended", trigger="EVConnectTimeout", stopped="Timeout"), timeout=timeout + T)
            if abs(frame.time - authorized - timeout) > S.max_time_deviation + 0.5:
                raise ConformanceFailure(f"ended {frame.time - authorized:.2f} s after the authorisation, "
                                         f"EVConnectionTimeOut is {timeout} s")
        else:
            await asyncio.sleep(timeout + S.max_time_deviation)
    with step(2, "plug in after the timeout: no charging"):
        await booted201.control.plug_in(S.evse)
        await session.expect_none("TransactionEvent", within=2.0, match={"transactionInfo": {"chargingState": "Charging"}})


@octt("TC_E_16_CS")
async def test_tc_e_16_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.auth_defaults(booted201.session, TxCtrlr__TxStopPoint="Authorized,EVConnected", TxCtrlr__StopTxOnInvalidId=True,
                         AuthCtrlr__OfflineTxForUnknownIdEnabled=True)
    await st.id_token_cached(booted201, S)
    await st.id_token_local_auth_list(booted201, S)
    await _offline(booted201, 60, 1)
    with step("StartOfflineTransaction", "offline: present the token and plug in; then reconnect"):
        await booted201.control.cut_network()
        await booted201.control.present_token(S.valid_token, S.evse)
        await booted201.control.plug_in(S.evse)
        await asyncio.sleep(1.0)
        invalid = {"idTokenInfo": {"status": "Invalid"}}
        session.answer("TransactionEvent", lambda p: invalid if "idToken" in p else {})
        await booted201.control.restore_network()
    with step(1, "the queue is flushed with offline = true"):
        await session.expect("TransactionEvent", {"offline": True}, timeout=T)
    with step(3, "after the Invalid answer: Ended, Deauthorized, stoppedReason DeAuthorized"):
        await session.expect("TransactionEvent", st.event_match(
            event_type="Ended", trigger="Deauthorized", stopped="DeAuthorized"), timeout=T)


# -- transaction status ------------------------------------------------------------------------------------
async def _status(cs: ChargerUnderTest, tx: str | None) -> dict[str, Any]:
    return await cs.session.call("GetTransactionStatus", {"transactionId": tx} if tx else {})


def _expect_status(answer: dict[str, Any], ongoing: bool | None, queued: bool) -> None:
    if answer.get("ongoingIndicator") != ongoing or answer["messagesInQueue"] != queued:
        raise ConformanceFailure(f"GetTransactionStatus answered {show(answer)}, expected ongoingIndicator "
                                 f"{'omitted' if ongoing is None else ongoing}, messagesInQueue {queued}")


async def _queued_while_offline(cs: ChargerUnderTest, tx: str | None, offline_s: float, during: Any = None) -> dict[str, Any]:
    """Cut the network, let TransactionEvents queue up (``during`` runs meanwhile), reconnect and ask
    GetTransactionStatus before the first queued message is answered."""
    session = cs.session
    asked = asyncio.Event()

    async def hold(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.wait_for(asked.wait(), T)
        return {}
    await cs.control.cut_network()
    if during is not None:
        await during()
    await asyncio.sleep(offline_s)
    session.answer("TransactionEvent", hold)
    connections = session.connections
    await cs.control.restore_network()
    await session.wait_connected(T + offline_s, after=connections)
    try:
        return await _status(cs, tx)
    finally:
        asked.set()


@octt("TC_E_28_CS")
async def test_tc_e_28_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "GetTransactionStatus of an unknown transaction"):
        _expect_status(await _status(booted201, str(uuid.uuid4())), False, False)


@octt("TC_E_29_CS")
async def test_tc_e_29_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, SampledDataCtrlr__TxUpdatedInterval=1, SampledDataCtrlr__Enabled=True)
    await _offline(booted201, 60, 2)
    tx = await st.charging(booted201, S)
    index = len(booted201.session.trace.frames)
    with step(3, "at reconnect: ongoing, messages in queue"):
        _expect_status(await _queued_while_offline(booted201, tx, 2.5), True, True)
    with step(5, "the queue is flushed: Updated, meter values, offline = true"):
        await booted201.session.expect("TransactionEvent", {"eventType": "Updated", "offline": True,
                                                            "meterValue": lambda v: bool(v)}, timeout=T)
        _seq_continuous(_events_since(booted201, index), tx)


@octt("TC_E_30_CS")
async def test_tc_e_30_cs(booted201: ChargerUnderTest) -> None:
    tx = await st.charging(booted201, S)
    await asyncio.sleep(0.5)
    with step(1, "GetTransactionStatus of the running transaction: ongoing, nothing queued"):
        _expect_status(await _status(booted201, tx), True, False)


@octt("TC_E_31_CS")
async def test_tc_e_31_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, SampledDataCtrlr__TxUpdatedInterval=1)
    await _offline(booted201, 60, 2)
    tx = await st.charging(booted201, S)

    async def end_offline() -> None:
        await booted201.control.present_token(S.valid_token, S.evse)
        await booted201.control.unplug(S.evse)
    with step(1, "the transaction ended offline; at reconnect: not ongoing, messages in queue"):
        _expect_status(await _queued_while_offline(booted201, tx, S.transaction_duration, end_offline), False, True)
    with step(3, "every event of the transaction delivered, the Ended one included, offline = true"):
        await booted201.session.expect("TransactionEvent", {"eventType": "Ended", "offline": True,
                                                            "transactionInfo": {"transactionId": tx}}, timeout=T)


@octt("TC_E_32_CS")
async def test_tc_e_32_cs(booted201: ChargerUnderTest) -> None:
    tx = await st.charging(booted201, S)
    await st.stop_authorized_local(booted201, S)
    await st.ev_disconnected(booted201, S)
    await asyncio.sleep(0.3)
    with step(1, "GetTransactionStatus of the ended transaction: not ongoing, nothing queued"):
        _expect_status(await _status(booted201, tx), False, False)


@octt("TC_E_33_CS")
async def test_tc_e_33_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, SampledDataCtrlr__TxUpdatedInterval=1)
    await _offline(booted201, 60, 2)
    await st.charging(booted201, S)
    with step(3, "at reconnect, without transactionId: ongoingIndicator omitted, messages in queue"):
        _expect_status(await _queued_while_offline(booted201, None, 2.5), None, True)
    with step(5, "the queue is flushed: Updated, meter values, offline = true"):
        await booted201.session.expect("TransactionEvent", {"eventType": "Updated", "offline": True,
                                                            "meterValue": lambda v: bool(v)}, timeout=T)


@octt("TC_E_34_CS")
async def test_tc_e_34_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "GetTransactionStatus without transactionId: ongoingIndicator omitted, nothing queued"):
        _expect_status(await _status(booted201, None), None, False)


# -- offline behaviour -------------------------------------------------------------------------------------
@octt("TC_E_40_CS")
async def test_tc_e_40_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, SampledDataCtrlr__TxUpdatedInterval=1, SampledDataCtrlr__Enabled=True)
    await _offline(booted201, 60, 3)
    tx = await st.charging(booted201, S)
    with step(1, "the connection is lost for a few meter-value intervals"):
        await booted201.control.cut_network()
        await asyncio.sleep(3.0)
        booted201.session.consume_all()
        index = len(booted201.session.trace.frames)
        await booted201.control.restore_network()
    with step(3, "the queue is flushed: Updated with meter values and offline = true, seqNo continuous"):
        await booted201.session.expect("TransactionEvent", {"offline": True}, timeout=T)
        await asyncio.sleep(1.0)
        flushed = [e for e in _events_since(booted201, index) if e.get("offline")]
        if len(flushed) < 2:
            raise ConformanceFailure(f"{len(flushed)} offline TransactionEvents delivered, expected one per interval")
        for e in flushed:
            if e["eventType"] != "Updated" or not e.get("meterValue"):
                raise ConformanceFailure(f"flushed {show(e)}, expected Updated with meterValue")
        _seq_continuous(_events_since(booted201, 0), tx)


async def _retry_case(cs: ChargerUnderTest, answers: list[Any], attempts: int, interval: int) -> list[Frame]:
    """Authorised and plugged in; the next TransactionEvent gets ``answers`` (NO_REPLY, a CallError or a
    payload) one per transmission; returns its transmissions (frames with the same payload)."""
    session = cs.session
    await st.set_variables(session, OCPPCommCtrlr__MessageAttempts_I_TransactionEvent=attempts,
                           OCPPCommCtrlr__MessageAttemptInterval_I_TransactionEvent=interval)
    await st.authorized_local(cs, S)
    session.consume_all()
    session.answer("TransactionEvent", *answers)
    await cs.control.plug_in(S.evse)
    first = await session.expect_frame("TransactionEvent", timeout=T)
    timeout = float(await st.get_variable(session, "OCPPCommCtrlr.MessageTimeout[Default]") or 30)

    def sent() -> list[Frame]:
        return [f for f in session.trace.frames if f.is_call and f.direction == "received"
                and f.action == "TransactionEvent" and f.payload == first.payload]
    while True:  # wait for each next transmission as long as the rule allows, plus the tolerance
        frames = sent()
        if (len(frames) >= len(answers) and _answered(session, frames[-1])) or len(frames) >= attempts:
            break
        gap = interval * len(frames) + timeout + S.max_time_deviation + 1.0
        if time.time() - frames[-1].time > gap:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(interval * attempts + 1.0)  # one more (longer) interval: no further retry
    return sent()


def _answered(session: Any, frame: Frame) -> bool:
    return any(f.direction == "sent" and f.unique_id == frame.unique_id for f in session.trace.frames)


def _gaps(frames: list[Frame], interval: int, extra: float, what: str) -> None:
    for k, (a, b) in enumerate(zip(frames, frames[1:]), start=1):
        expected = interval * k + extra
        if abs((b.time - a.time) - expected) > S.max_time_deviation + 0.5:
            raise ConformanceFailure(f"{what}: transmission {k + 1} came {b.time - a.time:.2f} s after the previous, "
                                     f"expected {expected:g} s (MessageAttemptInterval x {k}"
                                     f"{' + MessageTimeout' if extra else ''})")


@octt("TC_E_41_CS")
async def test_tc_e_41_cs(booted201: ChargerUnderTest) -> None:
    attempts, interval = 3, 1
    with step(5, f"the TransactionEvent is never answered: {attempts} transmissions in all"):
        frames = await _retry_case(booted201, [NO_REPLY] * attempts, attempts, interval)
        if len(frames) != attempts:
            raise ConformanceFailure(f"{len(frames)} transmissions, MessageAttempts is {attempts}")
        timeout = float(await st.get_variable(booted201.session, "OCPPCommCtrlr.MessageTimeout[Default]") or 30)
        _gaps(frames, interval, timeout, "no answer")


@octt("TC_E_50_CS")
async def test_tc_e_50_cs(booted201: ChargerUnderTest) -> None:
    attempts, interval = 3, 1
    with step(5, f"every transmission answered with CALLERROR InternalError: {attempts} transmissions"):
        frames = await _retry_case(booted201, [CallError("InternalError", "test")] * attempts, attempts, interval)
        if len(frames) != attempts:
            raise ConformanceFailure(f"{len(frames)} transmissions, MessageAttempts is {attempts}")
        _gaps(frames, interval, 0.0, "CALLERROR")


@octt("TC_E_42_CS")
async def test_tc_e_42_cs(booted201: ChargerUnderTest) -> None:
    attempts, interval = 3, 1
    with step(5, "the first transmission unanswered, the second answered: exactly 2"):
        frames = await _retry_case(booted201, [NO_REPLY, {}], attempts, interval)
        if len(frames) != 2:
            raise ConformanceFailure(f"{len(frames)} transmissions, expected 2")
        timeout = float(await st.get_variable(booted201.session, "OCPPCommCtrlr.MessageTimeout[Default]") or 30)
        _gaps(frames, interval, timeout, "no answer")


@octt("TC_E_51_CS")
async def test_tc_e_51_cs(booted201: ChargerUnderTest) -> None:
    attempts, interval = 3, 1
    with step(5, "the first transmission gets a CALLERROR, the second is answered: exactly 2"):
        frames = await _retry_case(booted201, [CallError("InternalError", "test"), {}], attempts, interval)
        if len(frames) != 2:
            raise ConformanceFailure(f"{len(frames)} transmissions, expected 2")
        _gaps(frames, interval, 0.0, "CALLERROR")


@octt("TC_E_43_CS")
async def test_tc_e_43_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, AuthCtrlr__OfflineTxForUnknownIdEnabled=True)
    await _offline(booted201, 60, 1)
    with step("TransactionEventsInQueueEnded", "offline: a whole session, plug-in to unplug"):
        await booted201.control.cut_network()
        await booted201.control.plug_in(S.evse)
        await booted201.control.present_token(S.valid_token, S.evse)
        await asyncio.sleep(1.0)
        await booted201.control.present_token(S.valid_token, S.evse)
        await booted201.control.unplug(S.evse)
        await asyncio.sleep(0.3)
        session.consume_all()
        index = len(session.trace.frames)
        await booted201.control.restore_network()
    with step(2, "the queue is flushed: every message offline, one Started, one Ended, seqNo continuous"):
        await session.expect("TransactionEvent", {"eventType": "Ended"}, timeout=T)
        events = _events_since(booted201, index)
        if not all(e.get("offline") for e in events):
            raise ConformanceFailure(f"not every flushed message has offline = true: {show(events)}")
        kinds = [e["eventType"] for e in events]
        if kinds.count("Started") != 1 or kinds.count("Ended") != 1:
            raise ConformanceFailure(f"flushed events {kinds}, expected one Started and one Ended")
        _seq_continuous(events, events[0]["transactionInfo"]["transactionId"])


async def _stopped_offline(cs: ChargerUnderTest, value: str) -> int:
    """Offline: present ``value`` and unplug; reconnect. Returns the trace index where the flush starts."""
    await cs.control.cut_network()
    await cs.control.present_token(value, S.evse)
    await cs.control.unplug(S.evse)
    await asyncio.sleep(0.5)
    cs.session.consume_all()
    index = len(cs.session.trace.frames)
    await cs.control.restore_network()
    return index


async def _flushed_offline(cs: ChargerUnderTest, index: int, tx: str) -> list[dict[str, Any]]:
    """The transaction's Ended event arrives and every event flushed since ``index`` is flagged offline."""
    await cs.session.expect("TransactionEvent", {"eventType": "Ended", "transactionInfo": {"transactionId": tx}},
                            timeout=T)
    events = _events_since(cs, index)
    if not all(e.get("offline") for e in events):
        raise ConformanceFailure(f"not every flushed message has offline = true: {show(events)}")
    return events


@octt("TC_E_44_CS")
async def test_tc_e_44_cs(booted201: ChargerUnderTest) -> None:
    await _offline(booted201, 60, 1)
    tx = await st.charging(booted201, S)
    with step(1, "offline: present the same token and unplug"):
        index = await _stopped_offline(booted201, S.valid_token)
    with step(4, "the queue is flushed: every message offline, the transaction Ended"):
        await _flushed_offline(booted201, index, tx)


@octt("TC_E_45_CS")
async def test_tc_e_45_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    group = "EVHILGROUP01"
    await _offline(booted201, 60, 1)
    await st.id_token_local_auth_list(booted201, S, S.valid_token_2, group=group)
    with step("Authorized", "a token of the group authorised"):
        session.answer("Authorize", {"idTokenInfo": {"status": "Accepted", "groupIdToken": st.token(S, group)}})
        await st.ev_connected_pre_session(booted201, S)
        await st.authorized_local(booted201, S)
        tx = await st.energy_transfer_started(booted201, S)
    with step(1, "offline: another token of the same group stops it, unplug"):
        index = await _stopped_offline(booted201, S.valid_token_2)
    with step(4, "the queue is flushed: every message offline, the transaction Ended"):
        events = await _flushed_offline(booted201, index, tx)
        if not any(e["triggerReason"] == "StopAuthorized" for e in events):
            raise ConformanceFailure(f"no StopAuthorized event among {show(events)}: the same-group token did not stop it")


# -- the EV pauses -----------------------------------------------------------------------------------------
@octt("TC_E_22_CS")
async def test_tc_e_22_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="EnergyTransfer")
    tx = await st.charging(booted201, S)
    with step(1, "the EV suspends charging: ChargingStateChanged, the transaction ends"):
        await booted201.control.ev_suspend(S.evse)
        event = await booted201.session.expect("TransactionEvent", st.event_match(
            trigger="ChargingStateChanged", tx=tx, state=("EVConnected", "SuspendedEV")), timeout=T)
        state, kind = event["transactionInfo"]["chargingState"], event["eventType"]
        reason = event["transactionInfo"].get("stoppedReason")
        if not ((state == "EVConnected" and kind == "Ended") or (state == "SuspendedEV" and reason == "StoppedByEV")):
            raise ConformanceFailure(f"TransactionEvent {show(event)}: expected Ended in EVConnected, or SuspendedEV "
                                     "with stoppedReason StoppedByEV")


@octt("TC_E_38_CS")
async def test_tc_e_38_cs(booted201: ChargerUnderTest) -> None:
    await st.authorized_local(booted201, S)
    with step(1, "an EV that does not ask for energy is plugged in"):
        await booted201.control.ev_suspend(S.evse)
        await st.ev_connected_pre_session(booted201, S)
    with step(2, "TransactionEvent ChargingStateChanged, SuspendedEV"):
        await booted201.session.expect("TransactionEvent", st.event_match(
            trigger="ChargingStateChanged", state="SuspendedEV"), timeout=T)


# -- the EV side of the cable ------------------------------------------------------------------------------
async def _fixed_cable(cs: ChargerUnderTest) -> bool:
    """Whether the connector has a cable attached (ConnectorEnumType c...) rather than a socket (s...)."""
    answer = await cs.session.call("GetVariables", {"getVariableData": [{
        "component": {"name": "Connector", "evse": {"id": S.evse, "connectorId": S.connector}},
        "variable": {"name": "ConnectorType"}}]})
    kind = answer["getVariableResult"][0].get("attributeValue", "")
    return kind.startswith("c")


async def _ev_side_disconnect(cs: ChargerUnderTest, s: st.Settings = S, **match: Any) -> dict[str, Any]:
    with step(1, "the cable is pulled out of the EV: TransactionEvent EVCommunicationLost, Idle"):
        await cs.control.unplug_ev_side(s.evse)
        return await cs.session.expect("TransactionEvent", st.event_match(
            trigger="EVCommunicationLost", state="Idle", **match), timeout=T)


def _stopped(event: dict[str, Any], *reasons: str) -> None:
    reason = event["transactionInfo"].get("stoppedReason")
    if reason not in reasons:
        raise ConformanceFailure(f"stoppedReason {reason}, expected {' or '.join(reasons)}")


async def _station_side_after(cs: ChargerUnderTest, unlock_with_token: bool) -> None:
    with step(2, "unplug at the station side" + (" after presenting the start token to unlock" if unlock_with_token else "")):
        if unlock_with_token:
            await cs.control.present_token(S.valid_token, S.evse)
        await cs.control.unplug(S.evse)
    with step(3, "the connector is reported Available"):
        await cs.session.expect("StatusNotification", st.status_match(S, "Available"), timeout=T)


@octt("TC_E_17_CS")
async def test_tc_e_17_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session, TxCtrlr__TxStopPoint="PowerPathClosed", TxCtrlr__StopTxOnEVSideDisconnect=True,
                         OCPPCommCtrlr__UnlockOnEVSideDisconnect=False)
    await st.charging(booted201, S)
    await st.energy_transfer_suspended(booted201, S)
    event = await _ev_side_disconnect(booted201, event_type="Ended")
    _stopped(event, "EVDisconnected")
    await _station_side_after(booted201, unlock_with_token=not await _fixed_cable(booted201))


@octt("TC_E_20_CS")
async def test_tc_e_20_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="EVConnected", TxCtrlr__StopTxOnEVSideDisconnect=False)
    await st.charging(booted201, S)
    await st.energy_transfer_suspended(booted201, S)
    event = await _ev_side_disconnect(booted201, event_type="Ended")
    _stopped(event, "EVDisconnected")


@octt("TC_E_24_CS")
async def test_tc_e_24_cs(booted201: ChargerUnderTest) -> None:
    if await _fixed_cable(booted201):
        pytest.skip("not applicable: the connector has a fixed cable (HFS-1 is a detachable cable)")
    await st.set_variables(booted201.session, TxCtrlr__StopTxOnEVSideDisconnect=True,
                           OCPPCommCtrlr__UnlockOnEVSideDisconnect=True)
    await st.charging(booted201, S)
    await st.energy_transfer_suspended(booted201, S)
    await _ev_side_disconnect(booted201)
    await _station_side_after(booted201, unlock_with_token=False)


@octt("TC_E_25_CS")
async def test_tc_e_25_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__StopTxOnEVSideDisconnect=True,
                           OCPPCommCtrlr__UnlockOnEVSideDisconnect=False)
    await st.charging(booted201, S)
    await st.energy_transfer_suspended(booted201, S)
    await _ev_side_disconnect(booted201)
    await _station_side_after(booted201, unlock_with_token=not await _fixed_cable(booted201))


@octt("TC_E_26_CS")
async def test_tc_e_26_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    fixed = await _fixed_cable(booted201)
    await st.set_variables(session, TxCtrlr__TxStopPoint="Authorized", TxCtrlr__StopTxOnEVSideDisconnect=False,
                           OCPPCommCtrlr__UnlockOnEVSideDisconnect=False, TxCtrlr__EVConnectionTimeOut=30)
    tx = await st.charging(booted201, S)
    await st.energy_transfer_suspended(booted201, S)
    await _ev_side_disconnect(booted201, event_type="Updated", tx=tx)
    if fixed:
        with step(3, "fixed cable: the connector is reported Available"):
            await session.expect("StatusNotification", st.status_match(S, "Available"), timeout=T)
    with step(4, "the cable goes back into the EV: CablePluggedIn, EVConnected, the transaction goes on"):
        await booted201.control.ev_resume(S.evse)
        await booted201.control.plug_in_ev_side(S.evse)
        await session.expect("TransactionEvent", st.event_match(
            event_type="Updated", trigger="CablePluggedIn", state="EVConnected", tx=tx), timeout=T)
    with step(7, "charging resumes: ChargingStateChanged, Charging"):
        await session.expect("TransactionEvent", st.event_match(
            event_type="Updated", trigger="ChargingStateChanged", state="Charging", tx=tx), timeout=T)


@octt("TC_E_27_CS")
async def test_tc_e_27_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    if not await _fixed_cable(booted201):
        pytest.skip("not applicable: the connector is a socket for a detachable cable (HFS-2 is a fixed cable)")
    timeout = S.ev_connection_timeout
    await st.set_variables(session, TxCtrlr__TxStopPoint="Authorized", TxCtrlr__StopTxOnEVSideDisconnect=False,
                           OCPPCommCtrlr__UnlockOnEVSideDisconnect=False, TxCtrlr__EVConnectionTimeOut=timeout)
    tx = await st.charging(booted201, S)
    await st.energy_transfer_suspended(booted201, S)
    await _ev_side_disconnect(booted201, event_type="Updated", tx=tx)
    with step(3, "the connector is reported Available"):
        await session.expect("StatusNotification", st.status_match(S, "Available"), timeout=T)
    with step(5, f"not reconnected within EVConnectionTimeOut ({timeout} s): EVConnectTimeout, Ended, Timeout"):
        event = await session.expect("TransactionEvent", st.event_match(trigger="EVConnectTimeout", tx=tx),
                                     timeout=timeout + T)
        if event["eventType"] != "Ended":
            raise ConformanceFailure(f"eventType {event['eventType']}, expected Ended (TxStopPoint Authorized)")
        _stopped(event, "Timeout")


@octt("TC_E_37_CS")
async def test_tc_e_37_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="PowerPathClosed",
                           TxCtrlr__StopTxOnEVSideDisconnect=False)
    await st.charging(booted201, S)
    await st.energy_transfer_suspended(booted201, S)
    event = await _ev_side_disconnect(booted201, event_type="Ended")
    _stopped(event, "StoppedByEV", "EVDisconnected")


# -- the parking bay ---------------------------------------------------------------------------------------
@octt("TC_E_12_CS")
async def test_tc_e_12_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStartPoint="ParkingBayOccupancy")
    with step(1, "a vehicle drives into the bay: TransactionEvent Started, EVDetected"):
        await booted201.control.bay_enter(S.evse)
        await booted201.session.expect("TransactionEvent", st.event_match(event_type="Started", trigger="EVDetected"),
                                       timeout=T)


@octt("TC_E_19_CS")
async def test_tc_e_19_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, TxCtrlr__TxStopPoint="ParkingBayOccupancy")
    with step("ParkingBayOccupied", "a vehicle drives into the bay"):
        await booted201.control.bay_enter(S.evse)
    tx = await st.charging(booted201, S)
    await st.stop_authorized_local(booted201, S)
    with step("EVDisconnected", "unplug: connector Available, the transaction goes on"):
        await booted201.control.unplug(S.evse)
        await booted201.session.expect("StatusNotification", st.status_match(S, "Available"), timeout=T)
        if st.open_transaction(booted201.session, S.evse) != tx:
            raise ConformanceFailure("the transaction ended before the vehicle left the bay")
    with step(1, "the vehicle leaves the bay: Ended, EVDeparted, stoppedReason Local"):
        await booted201.control.bay_leave(S.evse)
        await booted201.session.expect("TransactionEvent", st.event_match(
            event_type="Ended", trigger="EVDeparted", stopped="Local", tx=tx), timeout=T)


# -- signed meter data -------------------------------------------------------------------------------------
@octt("TC_E_11_CS")
async def test_tc_e_11_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, TxCtrlr__TxStartPoint="DataSigned", SampledDataCtrlr__SignReadings=True)
    await st.authorized_local(booted201, S)
    with step(1, "plug in: connector Occupied"):
        await booted201.control.plug_in(S.evse)
        await session.expect("StatusNotification", st.status_match(S, "Occupied"), timeout=T)
    with step(3, "Started, SignedDataReceived, with the token, the EVSE and a signed Transaction.Begin reading"):
        event = await session.expect("TransactionEvent", {**st.event_match(
            event_type="Started", trigger=("SignedDataReceived", "RemoteStart"), token=S.valid_token),
            "evse": {"id": S.evse, "connectorId": S.connector}}, timeout=T)
        values = [sv for mv in event.get("meterValue", []) for sv in mv["sampledValue"]
                  if sv.get("context") == "Transaction.Begin"]
        fields = ("signedMeterData", "signingMethod", "encodingMethod", "publicKey")
        if not values or not all(all(sv.get("signedMeterValue", {}).get(f) for f in fields) for sv in values):
            raise ConformanceFailure(f"the Transaction.Begin reading is not signed: {show(event.get('meterValue'))}")
    with step(5, "Updated, ChargingStateChanged, Charging"):
        await session.expect("TransactionEvent", st.event_match(
            event_type="Updated", trigger="ChargingStateChanged", state="Charging"), timeout=T)
