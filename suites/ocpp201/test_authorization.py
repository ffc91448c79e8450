"""OCPP 2.0.1 block C, authorisation, charging station under test: local start with rejected tokens, the
authorisation cache (use, update, lifetime, persistence, clearing), group ids, the master pass and offline
authorisation (OCTT 2.0.1 Part 6 §C).
"""

from __future__ import annotations

import asyncio
from typing import Any

from hil.ocpp import states201 as st
from hil.ocpp.conformance import ConformanceFailure, octt, show, step
from hil.ocpp.csms import BLOCKED_TOKEN, EXPIRED_TOKEN, INVALID_TOKEN
from hil.ocpp.fixtures import ChargerUnderTest

S = st.SETTINGS
T = S.message_timeout
OTHER_TOKEN = "EVHILOTHER01"
MASTER_TOKEN = "EVHILMASTER1"
GROUP = "EVHILGROUP01"
MASTER_GROUP = "EVHILMASTERS"


async def _cache_defaults(cs: ChargerUnderTest, **more: str | int | bool) -> None:
    await st.set_variables(cs.session, AuthCacheCtrlr__Enabled=True, AuthCtrlr__LocalPreAuthorize=True, **more)


async def _rejected_start(cs: ChargerUnderTest, value: str, status: str) -> None:
    """Present ``value`` with the EV connected: AuthorizeRequest, answered ``status``; then no transaction."""
    session = cs.session
    with step(1, f"present {value}: AuthorizeRequest with it"):
        await cs.control.present_token(value, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": value}}, timeout=T)
    with step(2, f"answered {status}: no TransactionEvent"):
        await session.expect_none("TransactionEvent", within=2.0)


def _tx_event(value: str, kind: tuple[str, ...] = ("Started", "Updated")) -> dict[str, Any]:
    return st.event_match(event_type=kind, trigger="Authorized", token=value)


# -- local start with tokens that are not accepted -------------------------------------------------------
async def _listed_but_disabled(cs: ChargerUnderTest, value: str) -> bool:
    """evhil memory state: ``value`` Accepted in the local list, then the list disabled
    (LocalAuthListCtrlr.Enabled false) with LocalPreAuthorize true. A disabled list is not used: C13 and C14
    authorise from the list only while it is enabled, and a disabled list answers GetLocalListVersion 0
    (D02.FR.03, TC_D_10_CS). False (nothing done) when the station has no local list."""
    session = cs.session
    if await st.get_variable(session, "LocalAuthListCtrlr.Enabled") is None:
        return False
    with step("evhil", f"{value} Accepted in the local list, then LocalAuthListCtrlr.Enabled false, "
                       "LocalPreAuthorize true"):
        await st.set_variables(session, LocalAuthListCtrlr__Enabled=True)
        await st.id_token_local_auth_list(cs, S, value)
        await st.set_variables(session, LocalAuthListCtrlr__Enabled=False, AuthCtrlr__LocalPreAuthorize=True)
    return True


@octt("TC_C_02_CS")
async def test_tc_c_02_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session)
    listed = await _listed_but_disabled(booted201, INVALID_TOKEN)
    await st.ev_connected_pre_session(booted201, S)
    await _rejected_start(booted201, INVALID_TOKEN, "Invalid")
    if listed:
        with step("evhil", "GetLocalListVersion while the list is disabled: versionNumber 0 (D02.FR.03)"):
            answer = await booted201.session.call("GetLocalListVersion", {})
            if answer.get("versionNumber") != 0:
                raise ConformanceFailure(f"GetLocalListVersion answered {show(answer)} with the local list disabled, "
                                         "expected versionNumber 0")


@octt("TC_C_06_CS")
async def test_tc_c_06_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session)
    await st.ev_connected_pre_session(booted201, S)
    await _rejected_start(booted201, BLOCKED_TOKEN, "Blocked")


@octt("TC_C_07_CS")
async def test_tc_c_07_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session)
    await st.ev_connected_pre_session(booted201, S)
    await _rejected_start(booted201, EXPIRED_TOKEN, "Expired")


@octt("TC_C_56_CS")
async def test_tc_c_56_cs(booted201: ChargerUnderTest) -> None:
    await st.auth_defaults(booted201.session)
    booted201.session.unknown_token_status = "Unknown"
    await st.ev_connected_pre_session(booted201, S)
    await _rejected_start(booted201, OTHER_TOKEN, "Unknown")


@octt("TC_C_04_CS")
async def test_tc_c_04_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.auth_defaults(booted201.session)
    session.tokens[OTHER_TOKEN] = "Accepted"
    await st.charging(booted201, S)
    with step(1, "present a different accepted token without a common group: AuthorizeRequest"):
        await booted201.control.present_token(OTHER_TOKEN, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": OTHER_TOKEN}}, timeout=T)
    with step(2, "the transaction is not stopped"):
        await session.expect_none("TransactionEvent", within=2.0, match={"idToken": {"idToken": OTHER_TOKEN}})
        if st.open_transaction(session, S.evse) is None:
            raise ConformanceFailure("the transaction ended")


# -- the authorisation cache -------------------------------------------------------------------------------
@octt("TC_C_08_CS")
async def test_tc_c_08_cs(booted201: ChargerUnderTest) -> None:
    await _cache_defaults(booted201)
    await st.id_token_cached(booted201, S)
    await st.ev_connected_pre_session(booted201, S)
    booted201.session.forbid("Authorize")
    await st.authorized_local(booted201, S, expect_authorize=False)
    await st.energy_transfer_started(booted201, S)


async def _cached_not_accepted(cs: ChargerUnderTest, value: str, status: str) -> None:
    await _cache_defaults(cs, AuthCacheCtrlr__DisablePostAuthorize=False)
    await st.id_token_cached(cs, S, value)
    await st.ev_connected_pre_session(cs, S)
    with step(1, f"present {value}, cached as {status}: the station asks the CSMS again"):
        await cs.control.present_token(value, S.evse)
        await cs.session.expect("Authorize", {"idToken": {"idToken": value}}, timeout=T)


@octt("TC_C_09_CS")
async def test_tc_c_09_cs(booted201: ChargerUnderTest) -> None:
    await _cached_not_accepted(booted201, INVALID_TOKEN, "Invalid")


@octt("TC_C_10_CS")
async def test_tc_c_10_cs(booted201: ChargerUnderTest) -> None:
    await _cached_not_accepted(booted201, BLOCKED_TOKEN, "Blocked")


@octt("TC_C_11_CS")
async def test_tc_c_11_cs(booted201: ChargerUnderTest) -> None:
    await _cached_not_accepted(booted201, EXPIRED_TOKEN, "Expired")


@octt("TC_C_12_CS")
async def test_tc_c_12_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await _cached_not_accepted(booted201, INVALID_TOKEN, "Invalid")
    with step(2, "the CSMS now accepts it: the cache is updated and charging starts"):
        session.tokens[INVALID_TOKEN] = "Accepted"
        await booted201.control.present_token(INVALID_TOKEN, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": INVALID_TOKEN}}, timeout=T)
        await session.expect("TransactionEvent", _tx_event(INVALID_TOKEN), timeout=T)
        await st.energy_transfer_started(booted201, S)


@octt("TC_C_13_CS")
async def test_tc_c_13_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await _cache_defaults(booted201)
    await st.id_token_cached(booted201, S)
    start, _ = await st.tx_points(session)
    with step(1, "present the cached token without a cable: no AuthorizeRequest"):
        session.forbid("Authorize")
        await booted201.control.present_token(S.valid_token, S.evse)
        if "Authorized" in start:
            await session.expect("TransactionEvent", _tx_event(S.valid_token), timeout=T)
        await session.expect_none("TransactionEvent", within=1.0,
                                  match={"transactionInfo": {"chargingState": "Charging"}})
    with step(3, "plug in: the transaction starts with the token"):
        await booted201.control.plug_in(S.evse)
        await session.expect("StatusNotification", st.status_match(S, "Occupied"), timeout=T)
        await st.energy_transfer_started(booted201, S)
        await session.expect("TransactionEvent", {"idToken": {"idToken": S.valid_token}}, timeout=T)


async def _offline_invalid(cs: ChargerUnderTest, value: str, **config: str | int | bool) -> int:
    """Offline: present ``value`` with the EV connected; the CSMS answers the queued event with the token
    Invalid after the reconnect. Returns the trace index where the flush starts."""
    session = cs.session
    await _cache_defaults(cs, AuthCtrlr__LocalAuthorizeOffline=True, **config)
    await st.set_variables(session, OCPPCommCtrlr__OfflineThreshold=60, OCPPCommCtrlr__RetryBackOffWaitMinimum=1,
                           OCPPCommCtrlr__RetryBackOffRandomRange=0)
    await st.ev_connected_pre_session(cs, S)
    with step(1, "offline: present the token, charging starts"):
        await cs.control.cut_network()
        await cs.control.present_token(value, S.evse)
        await asyncio.sleep(S.transaction_duration + 0.5)
    with step(3, "reconnect: the queue is flushed; the event with the token answered Invalid"):
        session.answer("TransactionEvent", *[lambda p: {"idTokenInfo": {"status": "Invalid"}} if "idToken" in p else {}] * 4)
        session.consume_all()
        index = len(session.trace.frames)
        await cs.control.restore_network()
        await session.expect("TransactionEvent", {"offline": True, "triggerReason": "Authorized",
                                                  "idToken": {"idToken": value}}, timeout=T)
        await session.expect("TransactionEvent", {"offline": True, "triggerReason": "ChargingStateChanged"}, timeout=T)
    return index


def _events(cs: ChargerUnderTest, index: int) -> list[dict[str, Any]]:
    return [f.payload for f in cs.session.trace.frames[index:]
            if f.is_call and f.direction == "received" and f.action == "TransactionEvent"]


@octt("TC_C_15_CS")
async def test_tc_c_15_cs(booted201: ChargerUnderTest) -> None:
    await st.id_token_cached(booted201, S)
    index = await _offline_invalid(booted201, S.valid_token, AuthCtrlr__OfflineTxForUnknownIdEnabled=True,
                                   TxCtrlr__StopTxOnInvalidId=False, TxCtrlr__MaxEnergyOnInvalidId=10000)
    with step("post", "charging goes on within MaxEnergyOnInvalidId: no Deauthorized, no SuspendedEVSE"):
        await asyncio.sleep(2.0)
        for e in _events(booted201, index):
            if e["triggerReason"] == "Deauthorized" or e["transactionInfo"]["chargingState"] == "SuspendedEVSE":
                raise ConformanceFailure(f"{show(e)}: charging was stopped before MaxEnergyOnInvalidId (10 kWh)")


@octt("TC_C_16_CS")
async def test_tc_c_16_cs(booted201: ChargerUnderTest) -> None:
    await st.id_token_cached(booted201, S)
    await _offline_invalid(booted201, S.valid_token, TxCtrlr__StopTxOnInvalidId=True, TxCtrlr__MaxEnergyOnInvalidId=0)
    with step(5, "after the Invalid answer: Deauthorized, Ended, stoppedReason DeAuthorized"):
        await booted201.session.expect("TransactionEvent", st.event_match(
            trigger="Deauthorized", event_type="Ended", stopped="DeAuthorized"), timeout=T)


@octt("TC_C_17_CS")
async def test_tc_c_17_cs(booted201: ChargerUnderTest) -> None:
    await st.id_token_cached(booted201, S)
    index = await _offline_invalid(booted201, S.valid_token, AuthCtrlr__OfflineTxForUnknownIdEnabled=True,
                                   TxCtrlr__StopTxOnInvalidId=False, TxCtrlr__MaxEnergyOnInvalidId=0)
    with step(5, "after the Invalid answer: energy suspended (SuspendedEVSE), the transaction stays open"):
        await booted201.session.expect("TransactionEvent", st.event_match(
            trigger="ChargingStateChanged", state="SuspendedEVSE"), timeout=T)
        await asyncio.sleep(1.0)
        if any(e["eventType"] == "Ended" or e["triggerReason"] == "Deauthorized" for e in _events(booted201, index)):
            raise ConformanceFailure("the transaction was ended, StopTxOnInvalidId is false")


@octt("TC_C_18_CS")
async def test_tc_c_18_cs(booted201: ChargerUnderTest) -> None:
    await st.id_token_cached(booted201, S)
    await _offline_invalid(booted201, S.valid_token, AuthCtrlr__OfflineTxForUnknownIdEnabled=True,
                           TxCtrlr__StopTxOnInvalidId=True, TxCtrlr__MaxEnergyOnInvalidId=500)
    with step(5, "StopTxOnInvalidId wins over MaxEnergyOnInvalidId: Deauthorized, online"):
        event = await booted201.session.expect("TransactionEvent", st.event_match(trigger="Deauthorized"), timeout=T)
        if event.get("offline"):
            raise ConformanceFailure("the Deauthorized event is flagged offline; it was sent after the reconnect")


@octt("TC_C_57_CS")
async def test_tc_c_57_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, AuthCacheCtrlr__Enabled=True, AuthCtrlr__LocalPreAuthorize=True,
                           AuthCacheCtrlr__DisablePostAuthorize=True)
    await st.id_token_cached(booted201, S, INVALID_TOKEN)
    await st.ev_connected_pre_session(booted201, S)
    with step(1, "present the token cached as Invalid: no AuthorizeRequest, no authorisation"):
        await booted201.control.present_token(INVALID_TOKEN, S.evse)
        await session.expect_none("Authorize", within=2.0)
        await session.expect_none("TransactionEvent", within=0.5, match={"idToken": {"idToken": INVALID_TOKEN}})


@octt("TC_C_26_CS")
async def test_tc_c_26_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, LocalAuthListCtrlr__Enabled=True, AuthCtrlr__LocalPreAuthorize=True,
                           AuthCtrlr__OfflineTxForUnknownIdEnabled=True, AuthCtrlr__LocalAuthorizeOffline=True,
                           TxCtrlr__MaxEnergyOnInvalidId=0, TxCtrlr__StopTxOnInvalidId=False,
                           OCPPCommCtrlr__RetryBackOffWaitMinimum=1, OCPPCommCtrlr__RetryBackOffRandomRange=0)
    with step("StartOfflineTransaction", "offline: present an unknown token, plug in; reconnect"):
        await booted201.control.cut_network()
        await booted201.control.present_token(OTHER_TOKEN, S.evse)
        await booted201.control.plug_in(S.evse)
        await asyncio.sleep(1.0)
        session.answer("TransactionEvent", *[lambda p: {"idTokenInfo": {"status": "Invalid"}} if "idToken" in p else {}] * 4)
        session.consume_all()
        await booted201.control.restore_network()
    with step(1, "the queue is flushed with offline = true"):
        await session.expect("TransactionEvent", {"offline": True, "idToken": {"idToken": OTHER_TOKEN}}, timeout=T)
    with step(2, "after the Invalid answer: energy suspended"):
        await session.expect("TransactionEvent", st.event_match(state="SuspendedEVSE"), timeout=T)
    with step(3, "present the token again to stop, then unplug: StopAuthorized"):
        # OCTT writes <cfg valid idToken> here; a station stops a transaction for the token that started it
        # (or one of its group), so the token that started it is presented.
        await booted201.control.present_token(OTHER_TOKEN, S.evse)
        await session.expect("TransactionEvent", st.event_match(trigger="StopAuthorized"), timeout=T)
        await booted201.control.unplug(S.evse)


@octt("TC_C_32_CS")
async def test_tc_c_32_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await _cache_defaults(booted201)
    await st.id_token_cached(booted201, S)
    with step(1, "Booted again (Reset)"):
        await session.call_expect("Reset", {"type": "Immediate"}, "Accepted")
        await session.expect("BootNotification", timeout=T)
        await session.expect("SecurityEventNotification", timeout=T)
        session.consume_all()
    start, _ = await st.tx_points(session)
    with step(2, "present the cached token: no AuthorizeRequest (the cache survived the reboot)"):
        session.forbid("Authorize")
        await booted201.control.present_token(S.valid_token, S.evse)
        if "Authorized" in start:
            await session.expect("TransactionEvent", _tx_event(S.valid_token), timeout=T)
        await asyncio.sleep(0.5)
    await st.energy_transfer_started(booted201, S)


@octt("TC_C_33_CS")
async def test_tc_c_33_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, AuthCacheCtrlr__Enabled=True, AuthCtrlr__LocalPreAuthorize=True,
                           LocalAuthListCtrlr__Enabled=True)
    await st.ev_connected_pre_session(booted201, S)
    with step(1, "present the token: AuthorizeRequest, Accepted (it enters the cache)"):
        await booted201.control.present_token(S.valid_token, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": S.valid_token}}, timeout=T)
        await session.expect("TransactionEvent", _tx_event(S.valid_token), timeout=T)
    await st.energy_transfer_started(booted201, S)
    await st.stop_authorized_local(booted201, S)
    await st.ev_disconnected(booted201, S)
    await st.ev_connected_pre_session(booted201, S)
    with step(11, "present it again: no AuthorizeRequest, the TransactionEvent carries it"):
        session.forbid("Authorize")
        session.answer("TransactionEvent", lambda p: {"idTokenInfo": {"status": "Invalid"}} if "idToken" in p else {})
        await booted201.control.present_token(S.valid_token, S.evse)
        await session.expect("TransactionEvent", _tx_event(S.valid_token), timeout=T)


@octt("TC_C_34_CS")
async def test_tc_c_34_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, AuthCacheCtrlr__Enabled=True, AuthCtrlr__LocalPreAuthorize=True,
                           AuthCacheCtrlr__DisablePostAuthorize=False)
    await st.id_token_cached(booted201, S)
    await st.ev_connected_pre_session(booted201, S)
    with step(1, "present the cached token: TransactionEvent with it, answered Invalid"):
        session.answer("TransactionEvent", lambda p: {"idTokenInfo": {"status": "Invalid"}} if "idToken" in p else {})
        session.forbid("Authorize")
        await booted201.control.present_token(S.valid_token, S.evse)
        await session.expect("TransactionEvent", _tx_event(S.valid_token), timeout=T)
        await asyncio.sleep(0.5)
        session.allow("Authorize")
    await st.ev_disconnected(booted201, S)
    await st.ev_connected_pre_session(booted201, S)
    with step(7, "present it again: the cache entry is now Invalid, so AuthorizeRequest is sent"):
        session.tokens[S.valid_token] = "Invalid"
        await booted201.control.present_token(S.valid_token, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": S.valid_token}}, timeout=T)


@octt("TC_C_36_CS")
async def test_tc_c_36_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, AuthCacheCtrlr__Enabled=True, AuthCtrlr__LocalPreAuthorize=False)
    await st.id_token_cached(booted201, S)
    with step(1, "present the cached token: without LocalPreAuthorize the CSMS is asked"):
        session.tokens[S.valid_token] = "Invalid"
        await booted201.control.present_token(S.valid_token, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": S.valid_token}}, timeout=T)


@octt("TC_C_37_CS")
async def test_tc_c_37_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await _cache_defaults(booted201)
    await st.id_token_cached(booted201, S)
    with step(1, "ClearCache: Accepted"):
        await session.call_expect("ClearCache", {}, "Accepted")
    await st.ev_connected_pre_session(booted201, S)
    with step(5, "present the token: the cache is empty, so AuthorizeRequest"):
        await st.authorized_local(booted201, S)
    await st.energy_transfer_started(booted201, S)


@octt("TC_C_38_CS")
async def test_tc_c_38_cs(booted201: ChargerUnderTest) -> None:
    await st.id_token_cached(booted201, S)
    await st.set_variables(booted201.session, AuthCacheCtrlr__Enabled=False)
    with step(1, "ClearCache with the cache disabled: Rejected"):
        await booted201.session.call_expect("ClearCache", {}, "Rejected")


@octt("TC_C_46_CS")
async def test_tc_c_46_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, AuthCacheCtrlr__LifeTime=2, AuthCtrlr__LocalPreAuthorize=True)
    await st.id_token_cached(booted201, S)
    await st.ev_connected_pre_session(booted201, S)
    with step(1, "wait for the cache lifetime (2 s) to pass"):
        await asyncio.sleep(2.5)
    with step(2, "Authorized: the expired entry is not used, AuthorizeRequest is sent"):
        await st.authorized_local(booted201, S)


# -- group ids and the master pass ------------------------------------------------------------------------
@octt("TC_C_39_CS")
async def test_tc_c_39_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    session.parents.update({S.valid_token: GROUP, S.valid_token_2: GROUP})
    session.tokens[S.valid_token_2] = "Accepted"
    await st.ev_connected_pre_session(booted201, S)
    await st.authorized_local(booted201, S)
    await st.energy_transfer_started(booted201, S)
    with step(6, "present a second token of the same group: AuthorizeRequest, then StopAuthorized with it"):
        await booted201.control.present_token(S.valid_token_2, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": S.valid_token_2}}, timeout=T)
        await session.expect("TransactionEvent", st.event_match(trigger="StopAuthorized", token=S.valid_token_2),
                             timeout=T)
    await st.ev_disconnected(booted201, S)


@octt("TC_C_41_CS")
async def test_tc_c_41_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    session.parents.update({S.valid_token: GROUP, S.valid_token_2: GROUP})
    session.tokens[S.valid_token_2] = "Accepted"
    await _cache_defaults(booted201)
    await st.id_token_cached(booted201, S)
    await st.id_token_cached(booted201, S, S.valid_token_2)
    await st.ev_connected_pre_session(booted201, S)
    with step(1, "present token 1: from the cache, no AuthorizeRequest"):
        session.forbid("Authorize")
        await st.authorized_local(booted201, S, expect_authorize=False)
    await st.energy_transfer_started(booted201, S)
    with step(4, "present token 2 of the same group (cached): StopAuthorized with it"):
        await booted201.control.present_token(S.valid_token_2, S.evse)
        await session.expect("TransactionEvent", st.event_match(trigger="StopAuthorized", token=S.valid_token_2),
                             timeout=T)
    await st.ev_disconnected(booted201, S)


async def _not_stopped_by(cs: ChargerUnderTest, value: str, tx: str) -> None:
    """Present ``value`` during ``tx``: the station asks the CSMS about it and the transaction goes on."""
    await cs.control.present_token(value, S.evse)
    await cs.session.expect("Authorize", {"idToken": {"idToken": value}}, timeout=T)
    await cs.session.expect_none("TransactionEvent", within=2.0, match={"triggerReason": "StopAuthorized"})
    if st.open_transaction(cs.session, S.evse) != tx:
        raise ConformanceFailure("the transaction ended")


@octt("TC_C_42_CS")
async def test_tc_c_42_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    session.parents.update({S.valid_token: GROUP, INVALID_TOKEN: GROUP})
    await st.ev_connected_pre_session(booted201, S)
    await st.authorized_local(booted201, S)
    tx = await st.energy_transfer_started(booted201, S)
    with step(6, "present an invalid token of the same group: AuthorizeRequest, the transaction goes on"):
        await _not_stopped_by(booted201, INVALID_TOKEN, tx)


@octt("TC_C_44_CS")
async def test_tc_c_44_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    session.parents.update({S.valid_token: GROUP, INVALID_TOKEN: GROUP})
    await _cache_defaults(booted201, AuthCacheCtrlr__DisablePostAuthorize=False)
    await st.id_token_cached(booted201, S)
    await st.id_token_cached(booted201, S, INVALID_TOKEN)
    await st.ev_connected_pre_session(booted201, S)
    await st.authorized_local(booted201, S, expect_authorize=False)
    tx = await st.energy_transfer_started(booted201, S)
    with step(4, "present the cached invalid token of the same group: AuthorizeRequest, no stop"):
        await _not_stopped_by(booted201, INVALID_TOKEN, tx)


@octt("TC_C_45_CS")
async def test_tc_c_45_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, TxCtrlr__TxStartPoint="PowerPathClosed", AuthCtrlr__MasterPassGroupId=MASTER_GROUP)
    session.tokens[MASTER_TOKEN] = "Accepted"
    session.parents[MASTER_TOKEN] = MASTER_GROUP
    with step(1, "present the master pass: AuthorizeRequest, Accepted with the master group"):
        await booted201.control.present_token(MASTER_TOKEN, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": MASTER_TOKEN}}, timeout=T)
    with step(3, "plug in: no transaction, no charging for the master pass"):
        await booted201.control.plug_in(S.evse)
        await session.expect("StatusNotification", st.status_match(S, "Occupied"), timeout=T)
        await session.expect_none("TransactionEvent", within=2.0)


@octt("TC_C_49_CS")
async def test_tc_c_49_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, AuthCtrlr__MasterPassGroupId=MASTER_GROUP)
    session.tokens.update({MASTER_TOKEN: "Accepted", S.valid_token_2: "Accepted"})
    session.parents[MASTER_TOKEN] = MASTER_GROUP
    evses = list(range(1, min(booted201.connectors, 2) + 1))
    txs = []
    for evse, value in zip(evses, (S.valid_token, S.valid_token_2)):
        txs.append(await st.charging(booted201, st.Settings(evse=evse), value))
    with step(1, "present the master pass: AuthorizeRequest"):
        await booted201.control.present_token(MASTER_TOKEN, S.evse)
        await session.expect("Authorize", {"idToken": {"idToken": MASTER_TOKEN}}, timeout=T)
    with step(3, "every transaction stops with stoppedReason MasterPass"):
        for tx in txs:
            await session.expect("TransactionEvent", st.event_match(event_type="Ended", stopped="MasterPass", tx=tx),
                                 timeout=T)
