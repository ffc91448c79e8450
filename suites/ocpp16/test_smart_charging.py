"""OCPP 1.6 Smart Charging, charge point under test (OCTT 1.6 §2.22).

The OCTT cases check what the charge point reports (SetChargingProfile answers and composite schedules).
Where a limit applies to a running transaction, evhil also checks that it is obeyed: the connector's
energy meter (over Modbus on the rig) must show the current inside the compliance band
(limit x 1.02 + 1 A) within the local settling time (10 s).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from hil.ocpp import states16 as st
from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.rpc import CallError
from hil.ocpp.smart_charging import LimitSettling, format_datetime, parse_datetime

S = st.SETTINGS
C = S.connector
T = S.message_timeout
PHASES = 3


def profile(pid: int, purpose: str, stack: int, periods: list[tuple[int, float]], *, duration: int | None = None,
            start: datetime | None = None, valid_for: int | None = None, transaction_id: int | None = None) -> dict:
    """A 1.6 Absolute csChargingProfiles in A with ``periods`` (startPeriod s, limit A); times in whole seconds."""
    start = start.replace(microsecond=0) if start is not None else None
    schedule: dict = {"chargingRateUnit": "A",
                      "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim, "numberPhases": PHASES}
                                                 for s, lim in periods]}
    if duration is not None:
        schedule["duration"] = duration
    if start is not None:
        schedule["startSchedule"] = format_datetime(start)
    body: dict = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
                  "chargingProfileKind": "Absolute", "chargingSchedule": schedule}
    if valid_for is not None and start is not None:
        body["validFrom"] = format_datetime(start)
        body["validTo"] = format_datetime(start + timedelta(seconds=valid_for))
    if transaction_id is not None:
        body["transactionId"] = transaction_id
    return body


async def _set(cp: ChargerUnderTest, connector: int, body: dict, expect: str = "Accepted") -> None:
    answer = await cp.session.call("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": body})
    if answer["status"] != expect:
        raise ConformanceFailure(f"SetChargingProfile {body['chargingProfilePurpose']} id {body['chargingProfileId']} "
                                 f"answered {answer['status']}, expected {expect}")


async def _composite(cp: ChargerUnderTest, duration: int, expected: list[tuple[float, float]],
                     anchor: datetime | None = None) -> None:
    """GetCompositeSchedule for ``duration`` s in A; ``expected`` periods (start s after ``anchor``, limit A).

    Starts are compared after shifting by x = scheduleStart - anchor (the OCTT's "x"), within the
    configured time deviation plus one second of rounding.
    """
    answer = await cp.session.call("GetCompositeSchedule", {"connectorId": C, "duration": duration,
                                                            "chargingRateUnit": "A"})
    if answer["status"] != "Accepted":
        raise ConformanceFailure(f"GetCompositeSchedule answered {answer['status']}")
    if answer.get("connectorId") != C:
        raise ConformanceFailure(f"GetCompositeSchedule connectorId {answer.get('connectorId')}, expected {C}")
    schedule = answer.get("chargingSchedule") or {}
    if schedule.get("chargingRateUnit") != "A" or schedule.get("duration") != duration:
        raise ConformanceFailure(f"composite unit {schedule.get('chargingRateUnit')} duration {schedule.get('duration')}, "
                                 f"expected A and {duration}")
    start = parse_datetime(answer.get("scheduleStart") or schedule.get("startSchedule"))
    if abs((start - datetime.now(timezone.utc)).total_seconds()) > S.max_time_deviation + 1:
        raise ConformanceFailure(f"scheduleStart {answer.get('scheduleStart')} is not the current time")
    x = (start - anchor).total_seconds() if anchor is not None else 0.0
    got = [(p["startPeriod"], p["limit"]) for p in schedule.get("chargingSchedulePeriod", [])]
    # a profile that started a moment before the request ends that moment before the composite does
    tail = duration - (S.max_time_deviation + 1)
    got = [g for k, g in enumerate(got) if k == 0 or g[0] < tail]
    want = [(max(0.0, s - x) if k else 0.0, lim) for k, (s, lim) in enumerate(expected)]
    ok = len(got) == len(want) and all(abs(g[0] - w[0]) <= S.max_time_deviation + 1 and abs(g[1] - w[1]) < 0.05
                                       for g, w in zip(got, want))
    if not ok:
        raise ConformanceFailure(f"composite periods {got}, expected {[(round(s, 1), lim) for s, lim in want]} "
                                 f"(x = {x:.1f} s)")


async def _phase_current(cp: ChargerUnderTest) -> float | None:
    meter = cp.meter(C)
    if meter is None:
        return None
    values = await asyncio.to_thread(meter.read)
    return max(abs(i) for i in values.current)


async def _drawing_above(cp: ChargerUnderTest, amps: float) -> None:
    """Precondition of a limit check: the connector's meter shows more than ``amps`` per phase."""
    deadline = asyncio.get_running_loop().time() + T
    while (current := await _phase_current(cp)) is not None and current <= amps:
        if asyncio.get_running_loop().time() > deadline:
            raise ConformanceFailure(f"the EV draws only {current:.1f} A per phase; a {amps:g} A limit could not "
                                     "be told from no limit")
        await asyncio.sleep(0.2)


async def _current_settles(cp: ChargerUnderTest, limit: float) -> None:
    """Energy flows and the connector's meter settles within limit x 1.02 + 1 A within the local settling
    time (``hil.ocpp.smart_charging.LimitSettling``). Skipped when the rig has no meter on the connector's
    port."""
    if await _phase_current(cp) is None:
        return
    await _drawing_above(cp, 0.5)
    loop = asyncio.get_running_loop()
    judge = LimitSettling(limit, loop.time())
    while (verdict := judge.add(loop.time(), await _phase_current(cp) or 0.0)) is None:
        await asyncio.sleep(0.25)
    if not verdict:
        raise ConformanceFailure(judge.failure())


@octt("TC_056_CS")
async def test_tc_056_cs(booted16: ChargerUnderTest) -> None:
    now = datetime.now(timezone.utc)
    with step(1, "SetChargingProfile TxDefaultProfile, 6 A from startPeriod 0: Accepted"):
        await _set(booted16, C, profile(1, "TxDefaultProfile", 0, [(0, 6.0)], duration=300, start=now))
    with step(3, "GetCompositeSchedule: 6 A for the duration"):
        await _composite(booted16, 300, [(0, 6.0)])


@octt("TC_057_CS")
async def test_tc_057_cs(booted16: ChargerUnderTest) -> None:
    tx = await st.charging(booted16)
    await _drawing_above(booted16, 6.0 * 1.02 + 1.0)
    now = datetime.now(timezone.utc)
    with step(1, "SetChargingProfile TxProfile for the running transaction, 6 A: Accepted"):
        await _set(booted16, C, profile(2, "TxProfile", 0, [(0, 6.0)], duration=300, start=now, transaction_id=tx))
    with step(3, "GetCompositeSchedule: 6 A"):
        await _composite(booted16, 300, [(0, 6.0)])
    with step("evhil", "the connector's meter holds at most 6 A (band 7.1 A) within 10 s"):
        await _current_settles(booted16, 6.0)


@octt("TC_058_1_CS")
async def test_tc_058_1_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "SetChargingProfile TxProfile with no transaction: Rejected (or PropertyConstraintViolation)"):
        try:
            await _set(booted16, C, profile(3, "TxProfile", 0, [(0, 6.0)], transaction_id=424242), expect="Rejected")
        except CallError as exc:
            if exc.code != "PropertyConstraintViolation":
                raise ConformanceFailure(f"CALLERROR {exc.code}, expected PropertyConstraintViolation") from None


@octt("TC_058_2_CS")
async def test_tc_058_2_cs(booted16: ChargerUnderTest) -> None:
    tx = await st.charging(booted16)
    with step(1, "SetChargingProfile TxProfile with another transactionId: Rejected"):
        await _set(booted16, C, profile(3, "TxProfile", 0, [(0, 6.0)], transaction_id=tx + 1000), expect="Rejected")


@octt("TC_082_CS")
async def test_tc_082_cs(booted16: ChargerUnderTest) -> None:
    await st.charging(booted16)
    await _drawing_above(booted16, 6.0 * 1.02 + 1.0)
    now = datetime.now(timezone.utc)
    with step(1, "SetChargingProfile TxDefaultProfile during the transaction, 6 A: Accepted"):
        await _set(booted16, C, profile(4, "TxDefaultProfile", 0, [(0, 6.0)], duration=300, start=now))
    with step(3, "GetCompositeSchedule: 6 A"):
        await _composite(booted16, 300, [(0, 6.0)])
    with step("evhil", "the connector's meter shows at most 6 A within 10 s"):
        await _current_settles(booted16, 6.0)


@octt("TC_066_CS")
async def test_tc_066_cs(booted16: ChargerUnderTest) -> None:
    tx = await st.charging(booted16)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=S.max_time_deviation)
    with step("memory", "SetChargingProfile station maximum 10 A, TxDefaultProfile and TxProfile stacks"):
        await _set(booted16, 0, profile(11, "ChargePointMaxProfile", 0, [(0, 10.0)], duration=86400, start=start))
        await _set(booted16, C, profile(12, "TxDefaultProfile", 0,
                                        [(0, 6.0), (60, 10.0), (120, 8.0), (180, 15.0), (260, 8.0)],
                                        duration=300, start=start, valid_for=401))
        await _set(booted16, C, profile(13, "TxProfile", 0,
                                        [(0, 8.0), (50, 11.0), (140, 16.0), (200, 6.0), (240, 12.0)],
                                        duration=260, start=start, valid_for=401, transaction_id=tx))
    with step(1, "GetCompositeSchedule 400 s: the minimum of the station maximum and the TxProfile"):
        await _composite(booted16, 400, [(0, 8.0), (50, 10.0), (200, 6.0), (240, 10.0)], anchor=start)


@octt("TC_067_CS")
async def test_tc_067_cs(booted16: ChargerUnderTest) -> None:
    await st.charging(booted16)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=S.max_time_deviation)
    with step("memory", "SetChargingProfile two TxDefaultProfiles (stack 1 and 0) and a station maximum"):
        await _set(booted16, C, profile(21, "TxDefaultProfile", 1, [(0, 6.0), (60, 8.0), (200, 10.0)],
                                        duration=400, start=start))
        await _set(booted16, C, profile(22, "TxDefaultProfile", 0, [(0, 7.0), (100, 9.0)], duration=400,
                                        start=start, valid_for=401))
        await _set(booted16, 0, profile(23, "ChargePointMaxProfile", 0, [(0, 11.0), (200, 12.0)], duration=86400,
                                        start=start, valid_for=401))

    async def clear(request: dict) -> None:
        await booted16.session.call_expect("ClearChargingProfile", request, "Accepted")

    with step(1, "ClearChargingProfile by id of the first profile: Accepted; composite from the second"):
        await clear({"id": 21})
        await _composite(booted16, 350, [(0, 7.0), (100, 9.0)], anchor=start)
    with step(5, "ClearChargingProfile by purpose and stack level of the second: Accepted; the station maximum"):
        await clear({"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0})
        await _composite(booted16, 350, [(0, 11.0), (200, 12.0)], anchor=start)
    with step(9, "ClearChargingProfile with no fields: Accepted; the charger's local limit only"):
        await clear({})
        answer = await booted16.session.call("GetCompositeSchedule", {"connectorId": C, "duration": 350,
                                                                      "chargingRateUnit": "A"})
        periods = (answer.get("chargingSchedule") or {}).get("chargingSchedulePeriod", [])
        if answer["status"] != "Accepted" or len(periods) != 1 or periods[0]["startPeriod"] != 0:
            raise ConformanceFailure(f"composite after clearing everything: {answer}, expected one period, the "
                                     "local limit")


@octt("TC_072_CS")
async def test_tc_072_cs(booted16: ChargerUnderTest) -> None:
    await st.charging(booted16)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=S.max_time_deviation)
    with step("memory", "SetChargingProfile TxDefaultProfile stack 0 (6/8/10 A) and stack 1 (7/9 A for 150 s)"):
        await _set(booted16, C, profile(31, "TxDefaultProfile", 0, [(0, 6.0), (100, 8.0), (200, 10.0)],
                                        duration=400, start=start, valid_for=401))
        await _set(booted16, C, profile(32, "TxDefaultProfile", 1, [(0, 7.0), (100, 9.0)], duration=150,
                                        start=start, valid_for=401))
    with step(1, "GetCompositeSchedule 350 s: stack 1 while it lasts, then stack 0"):
        await _composite(booted16, 350, [(0, 7.0), (100, 9.0), (150, 8.0), (200, 10.0)], anchor=start)


@octt("TC_059_CS")
async def test_tc_059_cs(booted16: ChargerUnderTest) -> None:
    now = datetime.now(timezone.utc)
    with step(1, "Charging with a TxProfile in RemoteStartTransaction (8 A)"):
        body = profile(41, "TxProfile", 0, [(0, 8.0)], start=now)  # no duration: 8 A for the whole transaction
        await st.charging(booted16, profile=body)
    with step(2, "GetCompositeSchedule: the TxProfile's 8 A"):
        await asyncio.sleep(0.2)
        await _composite(booted16, 300, [(0, 8.0)])
    with step("evhil", "the connector's meter shows at most 8 A within 10 s"):
        await _current_settles(booted16, 8.0)


@octt("TC_060_CS")
async def test_tc_060_cs(booted16: ChargerUnderTest) -> None:
    cp = booted16
    await cp.control.plug_in(C)
    with step(1, "RemoteStartTransaction with a TxDefaultProfile: Rejected (or PropertyConstraintViolation)"):
        body = profile(51, "TxDefaultProfile", 0, [(0, 8.0)])
        try:
            answer = await cp.session.call("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag,
                                                                      "chargingProfile": body})
        except CallError as exc:
            if exc.code != "PropertyConstraintViolation":
                raise ConformanceFailure(f"CALLERROR {exc.code}, expected PropertyConstraintViolation") from None
            return
        if answer["status"] != "Rejected":
            raise ConformanceFailure(f"RemoteStartTransaction answered {answer['status']}, expected Rejected")
        await cp.session.expect_none("StartTransaction", within=1.0)
