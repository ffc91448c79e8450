"""OCPP 2.0.1 block K, smart charging, charging station under test (OCTT 2.0.1 Part 6 §K): SetChargingProfile,
ClearChargingProfile, GetChargingProfiles with its ReportChargingProfiles, GetCompositeSchedule, and a
RequestStartTransaction that carries a TxProfile.

evhil plays the CSMS. ``<cfg chargingRateUnit>`` is the station's own: A when SmartChargingCtrlr.RateUnit
lists it, else W (every limit x 1000, as the OCTT does). Composite schedules are compared as the OCTT does: a
period expected at "n - x" starts n s after the moment the profile was set, less x = scheduleStart minus that
moment, within the configured time deviation plus one second of rounding.

Time windows: no case waits for a validFrom, validTo or startSchedule to pass, because the composite schedule
predicts it. So the OCTT's windows (300 s, 400 s) cost no test time and are kept as specified.

The cases for a station that *lacks* a feature (K_12 and K_42: only one rate unit; K_15 and K_38: no smart
charging) first read the station's capability over OCPP and skip when it has the feature. The reference
emulator has every feature, so there they skip; ``tests/test_ocpp201_variants.py`` runs them against emulators
built without it (``charging_station_variants.NoSmartCharging`` and ``OneRateUnit``). K_22 and K_24 use every
EVSE of the station (two on the default emulated rig); K_24 skips on a station with one.
Steps labelled "evhil" go beyond the OCTT table. They make a check able to fail where the table's own check
cannot tell a wrong station from a right one. Where a limit applies while energy flows (K_09, K_28, K_37, K_60)
one such step reads the EVSE's reference meter on the rig: the highest phase current must settle within the
band limit x 1.02 + 1 A within the local settling time (``hil.ocpp.smart_charging.LimitSettling``, the same
judgement as the 1.6 suite's), so a station that accepts and reports profiles but does not enforce them fails.
A limit in W is turned into A per phase with the voltages the meter measures. Without a meter on the EVSE's
port that step is skipped (noted in the report); the OCTT steps still count.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from hil.ocpp import states201 as st
from hil.ocpp.conformance import ConformanceFailure, octt, show, step
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.rpc import CallError
from hil.ocpp.smart_charging import LimitSettling, format_datetime, parse_datetime

S = st.SETTINGS
T = S.message_timeout
EVSE = S.evse
PHASES = 3
"""<cfg numberPhases>"""
DEV = math.ceil(S.max_time_deviation)
"""<cfg max time deviation> in whole seconds, as it goes into profile times."""
TOLERANCE = S.max_time_deviation + 1.0
"""How far a composite period's start may be from the expected one [s] (deviation + rounding)."""
PROFILE_ID = 101
"""<cfg chargingProfileId>"""
ID1, ID2, ID3 = 201, 202, 203
"""<Generated Id1>, <Generated Id2>, and a third profile of the evhil steps."""
STACK = 0
"""<cfg stackLevel>"""
UNKNOWN_TX = "UNKNOWN-TRANSACTION-ID"
_request_ids = itertools.count(1)


@dataclass(frozen=True)
class Not:
    """An expected composite limit that must differ from ``value``."""

    value: float

    def __call__(self, got: float) -> bool:
        return abs(got - self.value) > 0.05

    def __repr__(self) -> str:
        return f"not {self.value:g}"


Limit = float | None | Not
"""An expected composite limit: a value, None (any value: "local limit, not validated"), or ``Not(value)``."""


# -- fixtures -------------------------------------------------------------------------------------------------
async def _clear_all(cs: ChargerUnderTest) -> None:
    """The OCTT's general precondition "no charging schedule installed": ClearChargingProfile with no criteria
    (a station without smart charging answers a CALLERROR, which is fine here)."""
    try:
        await cs.session.call("ClearChargingProfile", {})
    except CallError:
        pass
    cs.session.consume_all()


@pytest.fixture
async def station(booted201: ChargerUnderTest) -> ChargerUnderTest:
    """Reusable state Booted with no charging profile installed."""
    await _clear_all(booted201)
    return booted201


# -- capabilities ---------------------------------------------------------------------------------------------
async def _units(cs: ChargerUnderTest) -> list[str]:
    """The rate units the station supports (SmartChargingCtrlr.RateUnit), [] when it does not say."""
    value = await st.get_variable(cs.session, "SmartChargingCtrlr.RateUnit")
    return [u.strip() for u in (value or "").split(",") if u.strip()]


async def _unit(cs: ChargerUnderTest) -> str:
    """<cfg chargingRateUnit>: A if supported (or not stated), else W."""
    units = await _units(cs)
    return "A" if "A" in units or not units else units[0]


async def _unsupported_unit(cs: ChargerUnderTest) -> str:
    """The rate unit the station does not support (K_12, K_42); skips the case when it supports both."""
    units = await _units(cs)
    if not units:
        pytest.skip("not applicable: the station reports no SmartChargingCtrlr.RateUnit")
    if {"A", "W"} <= set(units):
        pytest.skip(f"not applicable: the station supports both rate units (RateUnit {','.join(units)})")
    return "W" if "A" in units else "A"


async def _smart_charging(cs: ChargerUnderTest) -> tuple[bool, bool]:
    """(SmartChargingCtrlr.Available, SmartChargingCtrlr.Enabled) as the station reports them (False when
    absent: a station without the functional block has no SmartChargingCtrlr)."""
    available = await st.get_variable(cs.session, "SmartChargingCtrlr.Available")
    enabled = await st.get_variable(cs.session, "SmartChargingCtrlr.Enabled")
    return available == "true", enabled == "true"


# -- messages -------------------------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _at(t: datetime, seconds: float = 0) -> str:
    return format_datetime(t + timedelta(seconds=seconds))


def _k(unit: str) -> int:
    """The OCTT's limit factor: limits in this block are A, x 1000 when the unit is W."""
    return 1000 if unit == "W" else 1


def profile(pid: int, purpose: str, unit: str, periods: tuple[tuple[int, float], ...] = ((0, 6),), *,
            stack: int = STACK, kind: str = "Absolute", duration: int | None = None, start: str | None = None,
            valid_from: str | None = None, valid_to: str | None = None, transaction_id: str | None = None,
            recurrency: str | None = None) -> dict[str, Any]:
    """A 2.0.1 chargingProfile with one schedule; ``periods`` are (startPeriod s, limit in A), x 1000 for W."""
    schedule: dict[str, Any] = {"id": pid, "chargingRateUnit": unit, "chargingSchedulePeriod": [
        {"startPeriod": s, "limit": float(limit * _k(unit)), "numberPhases": PHASES} for s, limit in periods]}
    if duration is not None:
        schedule["duration"] = duration
    if start is not None:
        schedule["startSchedule"] = start
    body: dict[str, Any] = {"id": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
                            "chargingProfileKind": kind, "chargingSchedule": [schedule]}
    for key, value in (("recurrencyKind", recurrency), ("validFrom", valid_from), ("validTo", valid_to),
                       ("transactionId", transaction_id)):
        if value is not None:
            body[key] = value
    return body


async def _set(cs: ChargerUnderTest, evse: int, body: dict[str, Any], expect: str = "Accepted") -> None:
    answer = await cs.session.call("SetChargingProfile", {"evseId": evse, "chargingProfile": body})
    if answer["status"] != expect:
        info = answer.get("statusInfo")
        raise ConformanceFailure(f"SetChargingProfile {body['chargingProfilePurpose']} id {body['id']} on EVSE {evse} "
                                 f"answered {answer['status']}{' ' + show(info) if info else ''}, expected {expect}")


async def _clear(cs: ChargerUnderTest, payload: dict[str, Any], expect: str) -> None:
    answer = await cs.session.call("ClearChargingProfile", payload)
    if answer["status"] != expect:
        raise ConformanceFailure(f"ClearChargingProfile {show(payload)} answered {answer['status']}, expected {expect}")


async def _get_profiles(cs: ChargerUnderTest, criterion: dict[str, Any], evse: int | None = None,
                        expect: str = "Accepted") -> int:
    """GetChargingProfiles with a generated requestId, answered ``expect``; returns the requestId."""
    request_id = next(_request_ids)
    payload: dict[str, Any] = {"requestId": request_id, "chargingProfile": criterion}
    if evse is not None:
        payload["evseId"] = evse
    answer = await cs.session.call("GetChargingProfiles", payload)
    if answer["status"] != expect:
        raise ConformanceFailure(f"GetChargingProfiles {show(payload)} answered {answer['status']}, expected {expect}")
    return request_id


async def _reports(cs: ChargerUnderTest, request_id: int) -> list[dict[str, Any]]:
    """Every ReportChargingProfiles of the request: repeated while tbc is true (post: all received)."""
    reports = []
    while True:
        report = await cs.session.expect("ReportChargingProfiles", {"requestId": request_id}, timeout=T)
        reports.append(report)
        if not report.get("tbc", False):
            return reports


_TIMES = ("validFrom", "validTo", "startSchedule")


def _differs(sent: Any, got: Any, path: str = "chargingProfile") -> str | None:
    """Where a reported profile is not the one sent (every field sent, compared after normalising numbers
    and dateTimes), or None."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return f"{path} is {show(got)}"
        for key, value in sent.items():
            if key not in got:
                return f"{path}.{key} missing"
            found = _differs(value, got[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return f"{path} is {show(got)}, sent {show(sent)}"
        for n, (a, b) in enumerate(zip(sent, got)):
            found = _differs(a, b, f"{path}[{n}]")
            if found:
                return found
        return None
    if isinstance(sent, (int, float)) and not isinstance(sent, bool):
        same = isinstance(got, (int, float)) and not isinstance(got, bool) and abs(got - sent) < 1e-6
    elif path.rsplit(".", 1)[-1] in _TIMES:
        try:
            same = parse_datetime(got) == parse_datetime(sent)
        except (TypeError, ValueError):
            same = False
    else:
        same = got == sent
    return None if same else f"{path} is {show(got)}, sent {show(sent)}"


def _expect_reported(reports: list[dict[str, Any]], expected: dict[int, tuple[int, dict[str, Any]]]) -> None:
    """The reports hold exactly the profiles ``expected`` (id -> (evseId, profile as sent)), each on its EVSE
    and as it was sent."""
    seen: dict[int, tuple[int, dict[str, Any]]] = {}
    for report in reports:
        for p in report.get("chargingProfile", []):
            if p["id"] in seen:
                raise ConformanceFailure(f"profile {p['id']} reported twice")
            seen[p["id"]] = (report["evseId"], p)
    if set(seen) != set(expected):
        raise ConformanceFailure(f"reported profiles {sorted(seen)} (on EVSEs {[seen[i][0] for i in sorted(seen)]}), "
                                 f"expected {sorted(expected)}")
    for pid, (evse, sent) in expected.items():
        where, got = seen[pid]
        if where != evse:
            raise ConformanceFailure(f"profile {pid} reported with evseId {where}, expected {evse}")
        found = _differs(sent, got)
        if found:
            raise ConformanceFailure(f"profile {pid} is not the one sent: {found}")


async def _composite(cs: ChargerUnderTest, evse: int, duration: int,
                     unit: str) -> tuple[datetime, list[tuple[int, float]]]:
    """GetCompositeSchedule Accepted with the header the OCTT checks; (scheduleStart, periods)."""
    answer = await cs.session.call("GetCompositeSchedule", {"evseId": evse, "duration": duration,
                                                            "chargingRateUnit": unit})
    if answer["status"] != "Accepted":
        raise ConformanceFailure(f"GetCompositeSchedule EVSE {evse} answered {answer['status']}, expected Accepted")
    schedule = answer.get("schedule")
    if schedule is None:
        raise ConformanceFailure("GetCompositeSchedule Accepted without a schedule")
    for key, want in (("evseId", evse), ("duration", duration), ("chargingRateUnit", unit)):
        if schedule.get(key) != want:
            raise ConformanceFailure(f"schedule.{key} {schedule.get(key)!r}, expected {want!r}")
    start = parse_datetime(schedule["scheduleStart"])
    if abs((start - datetime.now(timezone.utc)).total_seconds()) > TOLERANCE:  # type: ignore[operator]
        raise ConformanceFailure(f"scheduleStart {schedule['scheduleStart']} is not the current time")
    periods = [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]
    if not periods or periods[0][0] != 0:
        raise ConformanceFailure(f"the first composite period starts at {periods[0][0] if periods else None}, not 0")
    if any(b[0] <= a[0] for a, b in zip(periods, periods[1:])):
        raise ConformanceFailure(f"composite periods {periods} are not ordered by increasing startPeriod")
    return start, periods  # type: ignore[return-value]


def _limit_ok(want: Limit, got: float) -> bool:
    if want is None:
        return True
    if isinstance(want, Not):
        return want(got)
    return abs(got - want) <= max(0.05, abs(want) * 1e-4)


def _expect_periods(start: datetime, periods: list[tuple[int, float]], want: list[tuple[float, Limit]],
                    anchor: datetime | None = None, trailing: bool = False) -> None:
    """The composite periods are ``want`` ((nominal start s, limit)); a start n is expected at n - x, with
    x = scheduleStart - ``anchor`` (the moment the profiles were set). ``trailing``: more periods may follow."""
    x = (start - anchor).total_seconds() if anchor is not None else 0.0
    expected = [(0.0 if n == 0 else max(0.0, s - x), limit) for n, (s, limit) in enumerate(want)]
    got = periods[: len(want)] if trailing else periods
    ok = len(got) == len(expected) and all(abs(g[0] - e[0]) <= TOLERANCE and _limit_ok(e[1], g[1])
                                           for g, e in zip(got, expected))
    if not ok:
        shown = [(round(s, 1), "any" if lim is None else lim) for s, lim in expected]
        more = " (and any after)" if trailing else ""
        raise ConformanceFailure(f"composite periods {periods}, expected {shown}{more} (x = {x:.1f} s)")


def _expect_in_force(periods: list[tuple[int, float]], offset: float, want: float) -> None:
    """The composite limit in force ``offset`` s after scheduleStart is ``want`` (an evhil check that allows
    a station its own rounding of scheduleStart against the transaction's start)."""
    got = [limit for start, limit in periods if start <= offset][-1]
    if not _limit_ok(want, got):
        raise ConformanceFailure(f"composite periods {periods}: {got:g} in force at {offset:g} s, expected {want:g}")


async def _obeyed_at_meter(cs: ChargerUnderTest, limit: float, unit: str) -> None:
    """evhil: the EVSE's reference meter shows ``limit`` (A per phase, or W in all) obeyed: the highest phase
    current settles within limit x 1.02 + 1 A within the local settling time (skipped without a meter)."""
    meter = st.reference_meter(cs, S)
    if meter is None:
        return
    limit_a = limit if unit == "A" else limit / sum((await meter.aread()).voltage)
    loop = asyncio.get_running_loop()
    judge = LimitSettling(limit_a, loop.time())
    while (verdict := judge.add(loop.time(), max(abs(i) for i in (await meter.aread()).current))) is None:
        await asyncio.sleep(0.25)
    if not verdict:
        raise ConformanceFailure(judge.failure() + (f" ({limit:g} W)" if unit == "W" else ""))


async def _two_profiles(cs: ChargerUnderTest, unit: str, stack2: int = STACK) -> dict[int, tuple[int, dict[str, Any]]]:
    """Memory state of K_29..K_36: Id1 ChargingStationMaxProfile on the station, Id2 TxDefaultProfile on
    <cfg evseId> (stackLevel ``stack2``). Returns id -> (evseId, profile)."""
    p1 = profile(ID1, "ChargingStationMaxProfile", unit, ((0, 16),), duration=86400)
    p2 = profile(ID2, "TxDefaultProfile", unit, stack=stack2, duration=300)
    with step("memory", "SetChargingProfile Id1 ChargingStationMaxProfile (EVSE 0), Id2 TxDefaultProfile: Accepted"):
        await _set(cs, 0, p1)
        await _set(cs, EVSE, p2)
    return {ID1: (0, p1), ID2: (EVSE, p2)}


async def _id3(cs: ChargerUnderTest, unit: str) -> None:
    with step("evhil", f"SetChargingProfile Id3 TxDefaultProfile on EVSE {EVSE} at stackLevel {STACK + 1}: Accepted"):
        await _set(cs, EVSE, profile(ID3, "TxDefaultProfile", unit, ((0, 10),), stack=STACK + 1, duration=300))


async def _reboot(cs: ChargerUnderTest) -> None:
    """Reusable state Booted through ResetRequest(Immediate)."""
    session = cs.session
    await session.call_expect("Reset", {"type": "Immediate"}, "Accepted")
    await session.expect("BootNotification", timeout=T)
    for k in range(1, cs.connectors + 1):
        await session.expect("StatusNotification", st.status_match(S, "Available", k), timeout=T)
    await session.expect("SecurityEventNotification",
                         {"type": lambda t: t in ("StartupOfTheDevice", "ResetOrReboot")}, timeout=T)


# -- K01 SetChargingProfile -----------------------------------------------------------------------------------
@octt("TC_K_01_CS")
async def test_tc_k_01_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    sent = profile(PROFILE_ID, "TxDefaultProfile", unit, duration=300)
    with step(1, f"SetChargingProfile TxDefaultProfile on EVSE {EVSE}, 6 A / 6000 W: Accepted"):
        await _set(station, EVSE, sent)
    with step(3, "GetChargingProfiles chargingProfileId: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]})
    with step(5, "ReportChargingProfiles: requestId, evseId, the profile as sent"):
        _expect_reported(await _reports(station, request_id), {PROFILE_ID: (EVSE, sent)})


@octt("TC_K_02_CS")
async def test_tc_k_02_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    with step(1, f"SetChargingProfile TxProfile, transactionId {UNKNOWN_TX}, no transaction: Rejected"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxProfile", unit, kind="Relative", transaction_id=UNKNOWN_TX),
                   "Rejected")


@octt("TC_K_03_CS")
async def test_tc_k_03_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    sent = profile(PROFILE_ID, "ChargingStationMaxProfile", unit, duration=300)
    with step(1, "SetChargingProfile ChargingStationMaxProfile on EVSE 0: Accepted"):
        await _set(station, 0, sent)
    with step(3, "GetChargingProfiles chargingProfileId: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]})
    with step(5, "ReportChargingProfiles: requestId, evseId 0, the profile as sent"):
        _expect_reported(await _reports(station, request_id), {PROFILE_ID: (0, sent)})


@octt("TC_K_04_CS")
async def test_tc_k_04_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    with step("memory", "SetChargingProfile TxDefaultProfile, 6 A: Accepted"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxDefaultProfile", unit, duration=300))
    sent = profile(PROFILE_ID, "TxDefaultProfile", unit, ((0, 10),), duration=300)
    with step(1, "SetChargingProfile with the same id, 10 A / 10000 W: Accepted"):
        await _set(station, EVSE, sent)
    with step(3, "GetChargingProfiles chargingProfileId: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]})
    with step(5, "ReportChargingProfiles: one profile with that id, holding the new limit"):
        _expect_reported(await _reports(station, request_id), {PROFILE_ID: (EVSE, sent)})


@octt("TC_K_10_CS")
async def test_tc_k_10_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    sent = profile(PROFILE_ID, "TxDefaultProfile", unit, duration=300)
    with step(1, "SetChargingProfile TxDefaultProfile on EVSE 0 (all EVSEs): Accepted"):
        await _set(station, 0, sent)
    with step(3, "GetChargingProfiles chargingProfileId: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]})
    with step(5, "one ReportChargingProfiles (tbc false): evseId 0, the profile as sent"):
        reports = await _reports(station, request_id)
        if len(reports) != 1:
            raise ConformanceFailure(f"{len(reports)} reports, expected one with tbc false")
        _expect_reported(reports, {PROFILE_ID: (0, sent)})


@octt("TC_K_11_CS")
async def test_tc_k_11_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    with step(1, "SetChargingProfile TxProfile on EVSE 0: Rejected"):
        await _set(station, 0, profile(PROFILE_ID, "TxProfile", unit, kind="Relative"), "Rejected")
    tx = await st.charging(station, S)
    with step("evhil", "SetChargingProfile TxProfile for the running transaction, but on EVSE 0: Rejected (K01.FR.16)"):
        await _set(station, 0, profile(PROFILE_ID, "TxProfile", unit, kind="Relative", transaction_id=tx), "Rejected")


@octt("TC_K_12_CS")
async def test_tc_k_12_cs(station: ChargerUnderTest) -> None:
    unsupported = await _unsupported_unit(station)
    with step(1, f"SetChargingProfile TxDefaultProfile in {unsupported} (not supported): Rejected"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxDefaultProfile", unsupported, duration=300), "Rejected")


@octt("TC_K_13_CS")
async def test_tc_k_13_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    sent = profile(PROFILE_ID, "TxDefaultProfile", unit, duration=300)
    with step(1, f"SetChargingProfile TxDefaultProfile on EVSE {EVSE}: Accepted"):
        await _set(station, EVSE, sent)
    with step(3, "Booted: Reset Immediate, BootNotification, every connector Available, SecurityEventNotification"):
        await _reboot(station)
    with step(4, "GetChargingProfiles chargingProfileId: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]})
    with step(6, "ReportChargingProfiles: requestId, evseId, the profile as sent before the reboot"):
        _expect_reported(await _reports(station, request_id), {PROFILE_ID: (EVSE, sent)})


@octt("TC_K_14_CS")
async def test_tc_k_14_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    unknown = station.connectors + 1
    with step(1, f"SetChargingProfile TxDefaultProfile on EVSE {unknown} (EVSE count + 1): Rejected"):
        await _set(station, unknown, profile(PROFILE_ID, "TxDefaultProfile", unit, duration=300), "Rejected")


@octt("TC_K_15_CS")
async def test_tc_k_15_cs(station: ChargerUnderTest) -> None:
    available, _ = await _smart_charging(station)
    if available:
        pytest.skip("not applicable: the station supports smart charging (SmartChargingCtrlr.Available true)")
    with step(1, "SetChargingProfile on a station without smart charging: CALLERROR NotSupported"):
        try:
            answer = await station.session.call("SetChargingProfile", {
                "evseId": EVSE, "chargingProfile": profile(PROFILE_ID, "TxDefaultProfile", "A", duration=300)})
        except CallError as exc:
            if exc.code != "NotSupported":
                raise ConformanceFailure(f"CALLERROR {exc.code}, expected NotSupported") from None
            return
        raise ConformanceFailure(f"SetChargingProfile answered {show(answer)}, expected CALLERROR NotSupported")


@octt("TC_K_16_CS")
async def test_tc_k_16_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    await st.charging(station, S)
    with step(1, f"SetChargingProfile TxProfile, transactionId {UNKNOWN_TX}, during a transaction: Rejected"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxProfile", unit, kind="Relative", transaction_id=UNKNOWN_TX),
                   "Rejected")


@octt("TC_K_19_CS")
async def test_tc_k_19_cs(station: ChargerUnderTest) -> None:
    unit, now = await _unit(station), _now()
    # The daily run began 10 s ago (startSchedule a day earlier): 6 A, then 10 A from 60 s into the run.
    sent = profile(PROFILE_ID, "TxDefaultProfile", unit, ((0, 6), (60, 10)), kind="Recurring", recurrency="Daily",
                   start=_at(now, -86400 - 10))
    with step(1, "SetChargingProfile Recurring Daily: Accepted"):
        await _set(station, EVSE, sent)
    with step("evhil", "GetCompositeSchedule 300 s: today's run, 6 A then 10 A from 50 - x s"):
        start, periods = await _composite(station, EVSE, 300, unit)
        _expect_periods(start, periods, [(0, 6.0 * _k(unit)), (50, 10.0 * _k(unit))], anchor=now)


@octt("TC_K_21_CS")
async def test_tc_k_21_cs(station: ChargerUnderTest) -> None:
    unit, now = await _unit(station), _now()
    with step(1, "SetChargingProfile TxDefaultProfile Relative, validFrom now + 300 s: Accepted"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxDefaultProfile", unit, kind="Relative",
                                          valid_from=_at(now, 300)))
    with step(3, "GetCompositeSchedule 400 s: the local limit, then 6 A / 6000 W from 300 - x s"):
        start, periods = await _composite(station, EVSE, 400, unit)
        _expect_periods(start, periods, [(0, None), (300, 6.0 * _k(unit))], anchor=now)


@octt("TC_K_22_CS")
async def test_tc_k_22_cs(station: ChargerUnderTest) -> None:
    unit, now = await _unit(station), _now()
    with step(1, "SetChargingProfile TxDefaultProfile on EVSE 0, validTo now + 300 s: Accepted"):
        await _set(station, 0, profile(PROFILE_ID, "TxDefaultProfile", unit, valid_from=_at(now, -DEV),
                                       valid_to=_at(now, 300), start=_at(now)))
    for evse in range(0, station.connectors + 1):
        share = station.connectors if evse == 0 else 1
        with step(3, f"GetCompositeSchedule EVSE {evse}, 400 s: {6 * share} A x {_k(unit)} then the local limit "
                     "from 300 - x s"):
            start, periods = await _composite(station, evse, 400, unit)
            _expect_periods(start, periods, [(0, 6.0 * share * _k(unit)), (300, None)], anchor=now)


@octt("TC_K_23_CS")
async def test_tc_k_23_cs(station: ChargerUnderTest) -> None:
    unit, now = await _unit(station), _now()
    with step(1, "SetChargingProfile TxDefaultProfile, validFrom now + 50 s, startSchedule now + 60 s: Accepted"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxDefaultProfile", unit, valid_from=_at(now, 50 - DEV),
                                          valid_to=_at(now, 400 + DEV), start=_at(now, 60 - DEV)))
    with step(3, "GetCompositeSchedule 300 s: the local limit, then 6 A / 6000 W from 60 - x s"):
        start, periods = await _composite(station, EVSE, 300, unit)
        _expect_periods(start, periods, [(0, None), (60, 6.0 * _k(unit))], anchor=now)


@octt("TC_K_28_CS")
async def test_tc_k_28_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    await st.set_variables(station.session, SmartChargingCtrlr__LimitChangeSignificance="1.0")
    await st.charging(station, S)
    now = _now()
    with step(1, "SetChargingProfile TxDefaultProfile during the transaction, 300 s of 6 A: Accepted"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxDefaultProfile", unit, duration=300, start=_at(now, -DEV),
                                          valid_from=_at(now, -DEV), valid_to=_at(now, DEV + 300)))
    with step(3, "GetCompositeSchedule 300 s: 6 A / 6000 W from 0 (the new default applies to the transaction)"):
        start, periods = await _composite(station, EVSE, 300, unit)
        _expect_periods(start, periods, [(0, 6.0 * _k(unit))], anchor=now, trailing=True)
    with step("evhil", "the EVSE's meter shows the new 6 A / 6000 W limit obeyed within the settling time"):
        await _obeyed_at_meter(station, 6.0 * _k(unit), unit)


@octt("TC_K_60_CS")
async def test_tc_k_60_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    tx = await st.charging(station, S)
    sent = profile(PROFILE_ID, "TxProfile", unit, kind="Relative", transaction_id=tx)
    with step(1, "SetChargingProfile TxProfile Relative for the running transaction: Accepted"):
        await _set(station, EVSE, sent)
    with step(3, "GetChargingProfiles chargingProfileId: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]})
    with step(5, "ReportChargingProfiles: the profile as sent, transactionId included"):
        _expect_reported(await _reports(station, request_id), {PROFILE_ID: (EVSE, sent)})
    with step("evhil", "GetCompositeSchedule 60 s: the TxProfile's 6 A / 6000 W is in force"):
        _, periods = await _composite(station, EVSE, 60, unit)
        _expect_in_force(periods, TOLERANCE, 6.0 * _k(unit))
    with step("evhil", "the EVSE's meter shows the TxProfile's 6 A / 6000 W obeyed within the settling time"):
        await _obeyed_at_meter(station, 6.0 * _k(unit), unit)


# -- K05 remote start with a charging profile ------------------------------------------------------------------
@octt("TC_K_37_CS")
async def test_tc_k_37_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    await st.ev_connected_pre_session(station, S)
    sent = profile(PROFILE_ID, "TxProfile", unit, kind="Relative")
    # steps 1-6: RequestStartTransaction with the TxProfile Accepted, Authorize where due, TransactionEvent
    # RemoteStart with the remoteStartId
    await st.authorized_remote(station, S, profile=sent)
    tx = await st.energy_transfer_started(station, S)
    with step(8, "GetChargingProfiles chargingProfileId: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]})
    with step(10, "ReportChargingProfiles: the profile as sent, with transactionId of the new transaction"):
        _expect_reported(await _reports(station, request_id), {PROFILE_ID: (EVSE, {**sent, "transactionId": tx})})
    with step("evhil", "GetCompositeSchedule 60 s: the TxProfile's 6 A / 6000 W is in force"):
        _, periods = await _composite(station, EVSE, 60, unit)
        _expect_in_force(periods, TOLERANCE, 6.0 * _k(unit))
    with step("evhil", "the EVSE's meter shows the TxProfile's 6 A / 6000 W obeyed within the settling time"):
        await _obeyed_at_meter(station, 6.0 * _k(unit), unit)


@octt("TC_K_38_CS")
async def test_tc_k_38_cs(station: ChargerUnderTest) -> None:
    available, enabled = await _smart_charging(station)
    if available and enabled:
        pytest.skip("not applicable: the station supports smart charging and has it enabled")
    await st.ev_connected_pre_session(station, S)
    # steps 1-6: RequestStartTransaction with a TxProfile still Accepted (the profile is ignored), Authorize where
    # due, TransactionEvent RemoteStart with the remoteStartId
    await st.authorized_remote(station, S, profile=profile(PROFILE_ID, "TxProfile", "A", kind="Relative"))
    await st.energy_transfer_started(station, S)
    with step("evhil", "the profile was ignored: GetChargingProfiles NoProfiles (or not supported at all)"):
        try:
            await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]}, expect="NoProfiles")
        except CallError as exc:
            if exc.code not in ("NotSupported", "NotImplemented"):
                raise ConformanceFailure(f"GetChargingProfiles: CALLERROR {exc.code}") from None


# -- K08 GetCompositeSchedule ---------------------------------------------------------------------------------
@octt("TC_K_39_CS")
async def test_tc_k_39_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    with step(1, "GetCompositeSchedule EVSE 0, 300 s, no profile installed: Accepted, a period from 0"):
        start, periods = await _composite(station, 0, 300, unit)
        _expect_periods(start, periods, [(0, None)], trailing=True)


@octt("TC_K_40_CS")
async def test_tc_k_40_cs(station: ChargerUnderTest) -> None:
    unit, now = await _unit(station), _now()
    window = {"valid_from": _at(now, -DEV), "valid_to": _at(now, DEV + 401), "start": _at(now, -DEV)}
    with step("memory", "SetChargingProfile TxDefaultProfile stackLevel 0 {0: 6, 100: 8, 200: 10} and "
                        "stackLevel 1 {0: 7, 100: 9} for 150 s: Accepted"):
        await _set(station, EVSE, profile(ID1, "TxDefaultProfile", unit, ((0, 6), (100, 8), (200, 10)), stack=0,
                                          duration=400 + DEV, **window))
        await _set(station, EVSE, profile(ID2, "TxDefaultProfile", unit, ((0, 7), (100, 9)), stack=1,
                                          duration=150 + DEV, **window))
    with step(1, "GetCompositeSchedule 350 s: 7, 9 from 100 - x, 8 from 150 - x, 10 from 200 - x"):
        k = _k(unit)
        start, periods = await _composite(station, EVSE, 350, unit)
        _expect_periods(start, periods, [(0, 7.0 * k), (100, 9.0 * k), (150, 8.0 * k), (200, 10.0 * k)], anchor=now)


@octt("TC_K_41_CS")
async def test_tc_k_41_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    # The table installs a TxProfile without a transaction; it needs one (K01.FR.09), so the case runs in
    # EnergyTransferStarted with the transaction's id.
    tx = await st.charging(station, S)
    now = _now()
    window = {"valid_from": _at(now, -DEV), "valid_to": _at(now, DEV + 401), "start": _at(now, -DEV)}
    with step("memory", "SetChargingProfile ChargingStationMaxProfile 10, TxDefaultProfile and TxProfile: Accepted"):
        await _set(station, 0, profile(ID1, "ChargingStationMaxProfile", unit, ((0, 10),), duration=86400,
                                       start=_at(now, -DEV)))
        await _set(station, EVSE, profile(ID2, "TxDefaultProfile", unit,
                                          ((0, 6), (60, 10), (120, 8), (180, 15), (260, 8)), duration=300, **window))
        await _set(station, EVSE, profile(ID3, "TxProfile", unit, ((0, 8), (50, 11), (140, 16), (200, 6), (240, 12)),
                                          duration=260, transaction_id=tx, **window))
    with step(1, "GetCompositeSchedule 400 s: 8, 10 from 50 - x, 6 from 200 - x, 10 from 240 - x"):
        k = _k(unit)
        start, periods = await _composite(station, EVSE, 400, unit)
        _expect_periods(start, periods, [(0, 8.0 * k), (50, 10.0 * k), (200, 6.0 * k), (240, 10.0 * k)], anchor=now,
                        trailing=True)


@octt("TC_K_42_CS")
async def test_tc_k_42_cs(station: ChargerUnderTest) -> None:
    unsupported = await _unsupported_unit(station)
    with step(1, f"GetCompositeSchedule EVSE 0 in {unsupported} (not supported): Rejected, no schedule"):
        answer = await station.session.call("GetCompositeSchedule", {"evseId": 0, "duration": 300,
                                                                          "chargingRateUnit": unsupported})
        if answer["status"] != "Rejected" or "schedule" in answer:
            raise ConformanceFailure(f"GetCompositeSchedule answered {show(answer)}, expected Rejected, no schedule")


@octt("TC_K_47_CS")
async def test_tc_k_47_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    unknown = station.connectors + 1
    with step(1, f"GetCompositeSchedule EVSE {unknown} (EVSE count + 1): Rejected, no schedule"):
        answer = await station.session.call("GetCompositeSchedule", {"evseId": unknown, "duration": 300,
                                                                     "chargingRateUnit": unit})
        if answer["status"] != "Rejected" or "schedule" in answer:
            raise ConformanceFailure(f"GetCompositeSchedule answered {show(answer)}, expected Rejected, no schedule")


# -- K09 GetChargingProfiles ----------------------------------------------------------------------------------
@octt("TC_K_29_CS")
async def test_tc_k_29_cs(station: ChargerUnderTest) -> None:
    installed = await _two_profiles(station, await _unit(station))
    with step(1, "GetChargingProfiles evseId 0: Accepted"):
        request_id = await _get_profiles(station, {}, evse=0)
    with step(3, "ReportChargingProfiles: Id1 (ChargingStationMaxProfile) on EVSE 0 only; all reports received"):
        _expect_reported(await _reports(station, request_id), {ID1: installed[ID1]})


@octt("TC_K_30_CS")
async def test_tc_k_30_cs(station: ChargerUnderTest) -> None:
    installed = await _two_profiles(station, await _unit(station))
    with step(1, f"GetChargingProfiles evseId {EVSE}: Accepted"):
        request_id = await _get_profiles(station, {}, evse=EVSE)
    with step(3, f"ReportChargingProfiles: Id2 (TxDefaultProfile) on EVSE {EVSE} only; all reports received"):
        _expect_reported(await _reports(station, request_id), {ID2: installed[ID2]})


@octt("TC_K_31_CS")
async def test_tc_k_31_cs(station: ChargerUnderTest) -> None:
    installed = await _two_profiles(station, await _unit(station))
    with step(1, "GetChargingProfiles without evseId: Accepted"):
        request_id = await _get_profiles(station, {})
    with step(3, "ReportChargingProfiles (tbc on all but the last): Id1 on EVSE 0 and Id2 on its EVSE"):
        _expect_reported(await _reports(station, request_id), installed)


@octt("TC_K_32_CS")
async def test_tc_k_32_cs(station: ChargerUnderTest) -> None:
    installed = await _two_profiles(station, await _unit(station))
    with step(1, "GetChargingProfiles chargingProfileId [Id1]: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfileId": [ID1]})
    with step(3, "ReportChargingProfiles: Id1 only"):
        _expect_reported(await _reports(station, request_id), {ID1: installed[ID1]})


@octt("TC_K_33_CS")
async def test_tc_k_33_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    # stackLevel2 = stackLevel, else nothing on the EVSE matches (see the case notes).
    installed = await _two_profiles(station, unit, stack2=STACK)
    with step(1, f"GetChargingProfiles evseId {EVSE}, stackLevel {STACK}: Accepted"):
        request_id = await _get_profiles(station, {"stackLevel": STACK}, evse=EVSE)
    with step(3, "ReportChargingProfiles: Id2 only"):
        _expect_reported(await _reports(station, request_id), {ID2: installed[ID2]})
    await _id3(station, unit)
    with step("evhil", "the same request again: still Id2 only (Id3's stackLevel does not match)"):
        request_id = await _get_profiles(station, {"stackLevel": STACK}, evse=EVSE)
        _expect_reported(await _reports(station, request_id), {ID2: installed[ID2]})


@octt("TC_K_34_CS")
async def test_tc_k_34_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    sent = profile(ID1, "TxDefaultProfile", unit, stack=STACK + 1, duration=300)
    with step("memory", f"SetChargingProfile Id1 TxDefaultProfile stackLevel {STACK + 1}: Accepted"):
        await _set(station, EVSE, sent)
    with step(1, f"GetChargingProfiles evseId {EVSE}, chargingLimitSource [CSO]: Accepted"):
        request_id = await _get_profiles(station, {"chargingLimitSource": ["CSO"]}, evse=EVSE)
    with step(3, "ReportChargingProfiles: chargingLimitSource CSO, Id1"):
        reports = await _reports(station, request_id)
        sources = {r["chargingLimitSource"] for r in reports}
        if sources != {"CSO"}:
            raise ConformanceFailure(f"chargingLimitSource {sorted(sources)}, expected CSO")
        _expect_reported(reports, {ID1: (EVSE, sent)})
    with step(5, f"GetChargingProfiles evseId {EVSE}, chargingLimitSource [EMS] (no profiles): NoProfiles"):
        await _get_profiles(station, {"chargingLimitSource": ["EMS"]}, evse=EVSE, expect="NoProfiles")


@octt("TC_K_35_CS")
async def test_tc_k_35_cs(station: ChargerUnderTest) -> None:
    installed = await _two_profiles(station, await _unit(station))
    with step(1, f"GetChargingProfiles evseId {EVSE}, chargingProfilePurpose TxDefaultProfile: Accepted"):
        request_id = await _get_profiles(station, {"chargingProfilePurpose": "TxDefaultProfile"}, evse=EVSE)
    with step(3, "ReportChargingProfiles: Id2 only"):
        _expect_reported(await _reports(station, request_id), {ID2: installed[ID2]})


@octt("TC_K_36_CS")
async def test_tc_k_36_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    installed = await _two_profiles(station, unit)
    criterion = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": STACK}
    with step(1, f"GetChargingProfiles evseId {EVSE}, TxDefaultProfile, stackLevel {STACK}: Accepted"):
        request_id = await _get_profiles(station, criterion, evse=EVSE)
    with step(3, "ReportChargingProfiles: Id2 only"):
        _expect_reported(await _reports(station, request_id), {ID2: installed[ID2]})
    await _id3(station, unit)
    with step("evhil", "the same request again: still Id2 only (Id3's stackLevel does not match)"):
        request_id = await _get_profiles(station, criterion, evse=EVSE)
        _expect_reported(await _reports(station, request_id), {ID2: installed[ID2]})


# -- K10 ClearChargingProfile ---------------------------------------------------------------------------------
@octt("TC_K_05_CS")
async def test_tc_k_05_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    with step("memory", "SetChargingProfile TxDefaultProfile: Accepted"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxDefaultProfile", unit, duration=300))
    with step(1, "ClearChargingProfile chargingProfileId: Accepted"):
        await _clear(station, {"chargingProfileId": PROFILE_ID}, "Accepted")
    with step(3, "GetChargingProfiles chargingProfileId: NoProfiles, no report follows"):
        await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]}, expect="NoProfiles")
        await station.session.expect_none("ReportChargingProfiles", within=1.0)


@octt("TC_K_06_CS")
async def test_tc_k_06_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    tx = await st.charging(station, S)
    with step("memory", f"SetChargingProfile TxProfile stackLevel {STACK} for the running transaction: Accepted"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxProfile", unit, kind="Relative", transaction_id=tx))
    criteria = {"chargingProfilePurpose": "TxProfile", "stackLevel": STACK}
    with step(1, f"ClearChargingProfile TxProfile, stackLevel {STACK}: Accepted"):
        await _clear(station, {"chargingProfileCriteria": criteria}, "Accepted")
    with step(3, f"GetChargingProfiles TxProfile, stackLevel {STACK}: NoProfiles"):
        await _get_profiles(station, criteria, expect="NoProfiles")


@octt("TC_K_07_CS")
async def test_tc_k_07_cs(station: ChargerUnderTest) -> None:
    unit = await _unit(station)
    sent = profile(PROFILE_ID, "TxDefaultProfile", unit, stack=1, duration=300)
    with step("memory", "SetChargingProfile TxDefaultProfile stackLevel 1: Accepted"):
        await _set(station, EVSE, sent)
    with step(1, "ClearChargingProfile ChargingStationMaxProfile, stackLevel 0 (no such profile): Unknown"):
        await _clear(station, {"chargingProfileCriteria": {"chargingProfilePurpose": "ChargingStationMaxProfile",
                                                           "stackLevel": 0}}, "Unknown")
    with step("evhil", "the TxDefaultProfile is still installed"):
        request_id = await _get_profiles(station, {"chargingProfileId": [PROFILE_ID]})
        _expect_reported(await _reports(station, request_id), {PROFILE_ID: (EVSE, sent)})


@octt("TC_K_08_CS")
async def test_tc_k_08_cs(station: ChargerUnderTest) -> None:
    with step(1, "ClearChargingProfile chargingProfileId, no profile installed: Unknown"):
        await _clear(station, {"chargingProfileId": 4711}, "Unknown")


@octt("TC_K_09_CS")
async def test_tc_k_09_cs(station: ChargerUnderTest) -> None:
    unit, now = await _unit(station), _now()
    await st.set_variables(station.session, SmartChargingCtrlr__LimitChangeSignificance="1.0")
    with step("memory", "SetChargingProfile TxDefaultProfile 6 A / 6000 W for 400 s: Accepted"):
        await _set(station, EVSE, profile(PROFILE_ID, "TxDefaultProfile", unit, duration=400 + DEV, start=_at(now),
                                          valid_from=_at(now, -DEV), valid_to=_at(now, DEV + 401)))
    await st.charging(station, S)
    limit = 6.0 * _k(unit)
    with step(1, "GetCompositeSchedule 300 s: 6 A / 6000 W from 0"):
        start, periods = await _composite(station, EVSE, 300, unit)
        _expect_periods(start, periods, [(0, limit)], trailing=True)
    with step("evhil", "the EVSE's meter shows the 6 A / 6000 W limit obeyed within the settling time"):
        await _obeyed_at_meter(station, limit, unit)
    with step(3, "ClearChargingProfile TxDefaultProfile: Accepted"):
        await _clear(station, {"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}, "Accepted")
    with step(5, "GetCompositeSchedule 300 s: from 0 the local limit, not 6 A / 6000 W"):
        start, periods = await _composite(station, EVSE, 300, unit)
        _expect_periods(start, periods, [(0, Not(limit))], trailing=True)


@octt("TC_K_24_CS")
async def test_tc_k_24_cs(station: ChargerUnderTest) -> None:
    if station.connectors < 2:
        pytest.skip(f"not applicable: needs 2 EVSEs, the station has {station.connectors}")
    unit = await _unit(station)
    with step("memory", f"SetChargingProfile TxDefaultProfile stackLevel {STACK} on EVSE 1 and on EVSE 2: Accepted"):
        await _set(station, 1, profile(ID1, "TxDefaultProfile", unit, duration=300))
        await _set(station, 2, profile(ID2, "TxDefaultProfile", unit, duration=300))
    criteria = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": STACK}
    with step(1, f"ClearChargingProfile TxDefaultProfile, stackLevel {STACK}, no evseId: Accepted"):
        await _clear(station, {"chargingProfileCriteria": criteria}, "Accepted")
    with step(3, f"GetChargingProfiles TxDefaultProfile, stackLevel {STACK}: NoProfiles (both cleared)"):
        await _get_profiles(station, criteria, expect="NoProfiles")
