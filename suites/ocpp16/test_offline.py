"""OCPP 1.6 Core offline behaviour, charge point under test (OCTT 1.6 §2.14): transaction messages queued
while the network is gone and delivered in order afterwards, offline authorisation, and what happens when
the Central System rejects an idTag accepted offline.

The network is cut through the control seam (the emulator aborts its socket without a close handshake and
stops reconnecting until it is restored). A reconnection must not send BootNotification again.
"""

from __future__ import annotations

import asyncio
import time

from hil.ocpp import states16 as st
from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.csms import INVALID_TOKEN
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.smart_charging import parse_datetime

S = st.SETTINGS
C = S.connector
T = S.message_timeout


def _stamp(frame_payload: dict) -> float:
    return parse_datetime(frame_payload["meterValue"][0]["timestamp"]).timestamp()  # type: ignore[union-attr]


async def _offline_authorisation(cp: ChargerUnderTest, **extra: bool) -> None:
    await st.configure(cp.session, LocalAuthorizeOffline=True, LocalAuthListEnabled=True,
                       AuthorizationCacheEnabled=True, AllowOfflineTxForUnknownId=True, **extra)


@octt("TC_036_CS")
async def test_tc_036_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    interval = S.meter_value_sample_interval
    await st.configure(session, MeterValueSampleInterval=interval)
    tx = await st.charging(cp)
    with step("offline", f"cut the network for at least 3 sample intervals ({3 * interval + 1} s)"):
        await st.offline(cp)
        lost_at = time.time()
        await asyncio.sleep(3 * interval + 1)
        session.consume_all()
        back_at = time.time()
        await st.online(cp)
    with step(1, "the meter values sampled offline arrive, in chronological order before new ones, spaced "
                 "MeterValueSampleInterval"):
        taken_offline = int((back_at - lost_at) // interval) - 1
        frames = [await session.expect_frame("MeterValues", {"transactionId": tx}, timeout=T)
                  for _ in range(taken_offline + 1)]
        stamps = [_stamp(f.payload) for f in frames]
        shown = [f.payload["meterValue"][0]["timestamp"] for f in frames]
        if stamps != sorted(stamps):
            raise ConformanceFailure(f"meter values out of chronological order: {shown}")
        offline = [t for t in stamps if lost_at - S.max_time_deviation <= t <= back_at + S.max_time_deviation]
        if len(offline) < taken_offline:
            raise ConformanceFailure(f"{len(offline)} meter values sampled while offline were delivered, expected "
                                     f"{taken_offline} ({back_at - lost_at:.1f} s offline at {interval} s): {shown}")
        for a, b in zip(stamps, stamps[1:]):
            if abs(b - a - interval) > S.max_time_deviation:
                raise ConformanceFailure(f"queued meter values {b - a:.2f} s apart, expected {interval} s: {shown}")


@octt("TC_037_1_CS")
async def test_tc_037_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await _offline_authorisation(cp)
    await st.id_tag_local_auth_list(cp)
    with step("offline", "cut the network; the EV driver starts a transaction with a valid idTag"):
        await st.offline(cp)
        await cp.control.plug_in(C)
        await cp.control.present_token(S.valid_id_tag, C)
        await asyncio.sleep(0.5)
        await st.online(cp)
    with step(1, "StartTransaction (answered Accepted) and StatusNotification Charging"):
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)


async def _offline_invalid(cp: ChargerUnderTest, stop_on_invalid: bool) -> None:
    session = cp.session
    await _offline_authorisation(cp, StopTransactionOnInvalidId=stop_on_invalid)
    with step("offline", "cut the network; the EV driver starts a transaction with an idTag the CSMS rejects"):
        await st.offline(cp)
        await cp.control.plug_in(C)
        await cp.control.present_token(INVALID_TOKEN, C)
        await asyncio.sleep(0.5)
        await st.online(cp)
    with step(1, "StartTransaction, answered Invalid; StatusNotification Charging"):
        start = await session.expect("StartTransaction", {"connectorId": C, "idTag": INVALID_TOKEN}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)
    if stop_on_invalid:
        with step(5, "StopTransaction reason DeAuthorized, StatusNotification Finishing"):
            await session.expect("StopTransaction", {"reason": "DeAuthorized"}, timeout=T)
            await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)
    else:
        with step(5, "energy suspended: StatusNotification SuspendedEVSE, no StopTransaction"):
            await session.expect("StatusNotification", {"connectorId": C, "status": "SuspendedEVSE"}, timeout=T)
            await session.expect_none("StopTransaction", within=1.0)
    del start


@octt("TC_037_2_CS")
async def test_tc_037_2_cs(booted16: ChargerUnderTest) -> None:
    await _offline_invalid(booted16, stop_on_invalid=False)


@octt("TC_037_3_CS")
async def test_tc_037_3_cs(booted16: ChargerUnderTest) -> None:
    await _offline_invalid(booted16, stop_on_invalid=True)


@octt("TC_038_CS")
async def test_tc_038_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    tx = await st.charging(cp)
    with step("offline", "cut the network; the EV driver stops the transaction"):
        await st.offline(cp)
        await cp.control.present_token(S.valid_id_tag, C)
        await asyncio.sleep(0.5)
        await st.online(cp)
    with step(1, "StopTransaction reason Local (or omitted), StatusNotification Finishing"):
        stop = await session.expect("StopTransaction", {"transactionId": tx}, timeout=T)
        if stop.get("reason", "Local") != "Local":
            raise ConformanceFailure(f"StopTransaction reason {stop.get('reason')}, expected Local or omitted")
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)


@octt("TC_039_CS")
async def test_tc_039_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await _offline_authorisation(cp)
    await st.id_tag_local_auth_list(cp)
    with step("offline", "cut the network; start, stop and unplug while offline"):
        await st.offline(cp)
        await cp.control.plug_in(C)
        await cp.control.present_token(S.valid_id_tag, C)
        await asyncio.sleep(1.0)
        await cp.control.present_token(S.valid_id_tag, C)
        await asyncio.sleep(0.3)
        await cp.control.unplug(C)
        await asyncio.sleep(0.3)
        await st.online(cp)
    with step(1, "StartTransaction, answered Accepted"):
        start = await session.expect_frame("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        tx = await st.transaction_id_of(session, start.unique_id)
    with step(3, "StopTransaction of that transaction, reason Local or omitted"):
        stop = await session.expect_frame("StopTransaction", {"transactionId": tx}, timeout=T)
        if stop.payload.get("reason", "Local") != "Local":
            raise ConformanceFailure(f"StopTransaction reason {stop.payload.get('reason')}, expected Local")
        if stop.time < start.time:
            raise ConformanceFailure("StopTransaction arrived before its StartTransaction")
