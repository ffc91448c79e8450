"""Smart charging: profile stacking, purpose combination and composite schedules.

The OCTT 1.6 cases TC_066_CS, TC_067_CS and TC_072_CS are rebuilt with the profiles installed at
T0 and the composite requested ``x`` seconds later (the documents' "x").
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.ocpp.smart_charging import (
    ChargingProfile,
    ProfileStore,
    Purpose,
    composite_schedule,
    format_datetime,
    grid_composite,
    limit_at,
    parse_datetime,
    profile_from_ocpp,
)

T0 = datetime(2026, 12, 1, 18, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def p16(pid: int, purpose: str, stack: int, periods: list[tuple[int, float]], duration: int | None,
        *, start: datetime | None = T0, valid_from: datetime | None = None,
        valid_to: datetime | None = None, kind: str = "Absolute", unit: str = "A",
        recurrency: str | None = None, tx: int | None = None, phases: int | None = 3) -> dict:
    """A 1.6 csChargingProfiles payload as it arrives on the wire."""
    schedule: dict = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        {"startPeriod": s, "limit": lim, **({"numberPhases": phases} if phases else {})}
        for s, lim in periods]}
    if duration is not None:
        schedule["duration"] = duration
    if start is not None:
        schedule["startSchedule"] = format_datetime(start)
    payload: dict = {"chargingProfileId": pid, "stackLevel": stack,
                     "chargingProfilePurpose": purpose, "chargingProfileKind": kind,
                     "chargingSchedule": schedule}
    for key, value in (("validFrom", valid_from), ("validTo", valid_to)):
        if value is not None:
            payload[key] = format_datetime(value)
    if recurrency:
        payload["recurrencyKind"] = recurrency
    if tx is not None:
        payload["transactionId"] = tx
    return payload


def install(store: ProfileStore, payload: dict, connector: int, running: int | None = None,
            version: str = "1.6") -> ChargingProfile:
    profile = profile_from_ocpp(payload, version, connector)
    assert store.validate_install(profile, connector, running) is None
    store.install(profile)
    return profile


def periods(schedule) -> list[tuple[int, float | None]]:
    return [(p.start_s, p.limit) for p in schedule.periods]


# ----------------------------------------------------------------- OCTT worked examples

@pytest.mark.parametrize("x", [0, 4, 30])
@pytest.mark.parametrize("unit,k", [("A", 1), ("W", 1000)])
def test_tc_066_cs_combining_purposes(x: int, unit: str, k: int) -> None:
    store = ProfileStore(max_profiles=3, max_periods=5)
    install(store, p16(1, "ChargePointMaxProfile", 0, [(0, 10 * k)], 86400, unit=unit), 0)
    window = dict(valid_from=T0, valid_to=at(401), unit=unit)
    install(store, p16(2, "TxDefaultProfile", 0,
                       [(0, 6 * k), (60, 10 * k), (120, 8 * k), (180, 15 * k), (260, 8 * k)],
                       300, **window), 1)
    install(store, p16(3, "TxProfile", 0,
                       [(0, 8 * k), (50, 11 * k), (140, 16 * k), (200, 6 * k), (240, 12 * k)],
                       260, tx=42, **window), 1, running=42)
    comp = composite_schedule(store, 1, at(x), 400, unit, transaction_start=at(-60),
                              transaction_id=42)
    assert periods(comp) == [(0, 8 * k), (50 - x, 10 * k), (200 - x, 6 * k), (240 - x, 10 * k)]
    out = comp.to_ocpp("1.6")
    assert out["duration"] == 400 and out["chargingRateUnit"] == unit
    assert out["startSchedule"] == format_datetime(at(x))
    assert out["chargingSchedulePeriod"][1] == {"startPeriod": 50 - x, "limit": 10 * k,
                                               "numberPhases": 3}


@pytest.mark.parametrize("x", [0, 7])
def test_tc_067_cs_clear_charging_profile(x: int) -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 1, [(0, 6), (60, 8), (200, 10)], 400), 1)
    window = dict(valid_from=T0, valid_to=at(401))
    install(store, p16(2, "TxDefaultProfile", 0, [(0, 7), (100, 9)], 400, **window), 1)
    install(store, p16(3, "ChargePointMaxProfile", 0, [(0, 11), (200, 12)], 86400, **window), 0)

    def comp(**kw):
        return periods(composite_schedule(store, 1, at(x), 350, "A", **kw))

    assert store.clear(id=1) == 1
    assert comp() == [(0, 7), (100 - x, 9)]
    assert store.clear(purpose="TxDefaultProfile", stack_level=0) == 1
    assert comp() == [(0, 11), (200 - x, 12)]
    assert store.clear() == 1 and len(store) == 0
    assert comp(max_limit=32) == [(0, 32)]  # "the local limit of the Charging Station"
    assert comp() == [(0, None)]
    with pytest.raises(ValueError):
        composite_schedule(store, 1, at(x), 350).to_ocpp("1.6")


@pytest.mark.parametrize("x", [0, 3, 45])
def test_tc_072_cs_stacking(x: int) -> None:
    store = ProfileStore(max_stack_level=1)
    window = dict(valid_from=T0, valid_to=at(401))
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 6), (100, 8), (200, 10)], 400, **window), 1)
    install(store, p16(2, "TxDefaultProfile", 1, [(0, 7), (100, 9)], 150, **window), 1)
    comp = composite_schedule(store, 1, at(x), 350)
    assert periods(comp) == [(0, 7), (100 - x, 9), (150 - x, 8), (200 - x, 10)]
    assert [limit_at(store, 1, at(t)) for t in (0, 99, 100, 149, 150, 199, 200, 399)] == \
        [7, 7, 9, 9, 8, 8, 10, 10]
    assert limit_at(store, 1, at(401)) is None  # both expired


# ----------------------------------------------------------------- stacking and kinds

def test_higher_stack_only_wins_while_it_has_a_period() -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 16)], None), 1)
    install(store, p16(2, "TxDefaultProfile", 3, [(0, 6)], 600, start=at(300)), 1)
    assert periods(composite_schedule(store, 1, T0, 1200)) == [(0, 16), (300, 6), (900, 16)]


def test_valid_to_expiry_falls_back_to_lower_stack_level() -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 16)], None), 1)
    install(store, p16(2, "TxDefaultProfile", 1, [(0, 10)], None, valid_to=at(120)), 1)
    assert periods(composite_schedule(store, 1, T0, 300)) == [(0, 10), (120, 16)]
    assert limit_at(store, 1, at(119.9)) == 10 and limit_at(store, 1, at(120)) == 16


def test_valid_from_in_future_means_lower_level_until_then() -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 16)], None), 1)
    install(store, p16(2, "TxDefaultProfile", 1, [(0, 10)], None, valid_from=at(60)), 1)
    assert periods(composite_schedule(store, 1, T0, 300)) == [(0, 16), (60, 10)]


def test_relative_profile_anchored_at_transaction_start() -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 6), (300, 16)], 900, kind="Relative",
                       start=None), 1)
    comp = composite_schedule(store, 1, T0, 1200, transaction_start=at(-100))
    assert periods(comp) == [(0, 6), (200, 16), (800, None)]
    assert periods(composite_schedule(store, 1, T0, 600)) == [(0, 6), (300, 16)]
    assert limit_at(store, 1, at(250), transaction_start=T0) == 6
    assert limit_at(store, 1, at(250), transaction_start=at(-100)) == 16


def test_daily_recurring_wraps_at_24h() -> None:
    """The 1.6 example: 11 kW, 6 kW between 08:00 and 20:00, repeating daily since 2013."""
    store = ProfileStore()
    install(store, p16(100, "TxDefaultProfile", 0, [(0, 11000), (28800, 6000), (72000, 11000)],
                       86400, kind="Recurring", recurrency="Daily", unit="W",
                       start=parse_datetime("2013-01-01T00:00Z")), 0)
    noon = parse_datetime("2026-12-01T12:00:00Z")
    comp = composite_schedule(store, 1, noon, 2 * 86400, "W")
    assert periods(comp) == [(0, 6000), (28800, 11000), (72000, 6000), (115200, 11000),
                             (158400, 6000)]
    assert limit_at(store, 2, parse_datetime("2026-12-02T07:59:59+00:00"), "W") == 11000
    assert limit_at(store, 2, parse_datetime("2026-12-02T09:00:00+01:00"), "W") == 6000


def test_recurring_shorter_than_day_falls_back_between_runs() -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 16)], None, start=at(-86400 * 30)), 1)
    install(store, p16(2, "TxDefaultProfile", 1, [(0, 8)], 7200, kind="Recurring",
                       recurrency="Daily", start=parse_datetime("2026-11-01T08:00:00Z")), 1)
    day = parse_datetime("2026-12-01T00:00:00Z")
    h = 3600
    assert periods(composite_schedule(store, 1, day, 2 * 86400)) == [
        (0, 16), (8 * h, 8), (10 * h, 16), (32 * h, 8), (34 * h, 16)]


def test_weekly_recurring() -> None:
    store = ProfileStore()
    monday = parse_datetime("2026-11-30T00:00:00Z")
    install(store, p16(1, "ChargePointMaxProfile", 0, [(0, 32), (5 * 86400, 16)], None,
                       kind="Recurring", recurrency="Weekly", start=monday), 0)
    assert limit_at(store, 1, monday + timedelta(days=12)) == 16  # next Saturday
    assert limit_at(store, 1, monday + timedelta(days=14)) == 32  # Monday after


# ----------------------------------------------------------------- combining purposes

def test_tx_profile_replaces_tx_default_for_its_transaction() -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 16)], None), 1)
    install(store, p16(2, "TxProfile", 0, [(0, 10)], 100, tx=7), 1, running=7)
    comp = composite_schedule(store, 1, T0, 300, transaction_id=7)
    assert periods(comp) == [(0, 10), (100, None)]  # no fallback to TxDefault during the tx
    assert limit_at(store, 1, at(50), transaction_id=8) == 16  # another transaction
    assert store.end_transaction(1) == 1
    assert limit_at(store, 1, at(50)) == 16


def test_station_max_caps_every_connector() -> None:
    store = ProfileStore()
    install(store, p16(1, "ChargePointMaxProfile", 0, [(0, 20), (100, 40)], None), 0)
    install(store, p16(2, "TxDefaultProfile", 0, [(0, 32)], None), 0)
    for connector in (1, 2):
        assert periods(composite_schedule(store, connector, T0, 200)) == [(0, 20), (100, 32)]
    assert periods(composite_schedule(store, 1, T0, 200, max_limit=25)) == [(0, 20), (100, 25)]
    # connector 0 reports the station-level limits only
    assert periods(composite_schedule(store, 0, T0, 200)) == [(0, 20), (100, 40)]


def test_connector_tx_default_shadows_connector_zero_at_same_stack_level() -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 16)], None), 0)
    install(store, p16(2, "TxDefaultProfile", 0, [(0, 10)], None), 1)
    install(store, p16(3, "TxDefaultProfile", 1, [(0, 6)], 60), 0)
    assert limit_at(store, 1, at(10)) == 6  # connector-0 stack level 1 still leads
    assert limit_at(store, 1, at(100)) == 10
    assert limit_at(store, 2, at(100)) == 16
    assert len(store) == 3  # the connector-0 profile is not removed


def test_watt_amp_conversion_uses_voltage_and_phases() -> None:
    store = ProfileStore()
    install(store, p16(1, "ChargePointMaxProfile", 0, [(0, 11040)], None, unit="W"), 0)
    install(store, p16(2, "TxDefaultProfile", 0, [(0, 10), (60, 32)], None, phases=1), 1)
    assert limit_at(store, 1, at(0), "W") == pytest.approx(2300)  # 10 A x 230 V x 1 phase
    assert limit_at(store, 1, at(100), "A") == pytest.approx(16)  # 11040 W / (230 V x 3)
    assert limit_at(store, 1, at(100), "A", nominal_voltage=120) == pytest.approx(11040 / 360)
    comp = composite_schedule(store, 1, T0, 120, "W")
    assert comp.periods[0].number_phases == 1
    assert comp.to_ocpp("1.6")["chargingSchedulePeriod"][-1] == {"startPeriod": 60,
                                                                 "limit": 7360.0,
                                                                 "numberPhases": 1}
    none_given = ProfileStore()
    install(none_given, p16(3, "TxDefaultProfile", 0, [(0, 4600)], None, unit="W", phases=None), 1)
    assert limit_at(none_given, 1, T0, "A", phases=1) == pytest.approx(20)
    assert limit_at(none_given, 1, T0, "A") == pytest.approx(4600 / 690)


# ----------------------------------------------------------------- OCPP 2.0.1 shapes

def p201(pid: int, purpose: str, stack: int, limits: list[tuple[int, float]],
         duration: int = 600, **extra) -> dict:
    return {"id": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute", **extra,
            "chargingSchedule": [
                {"id": 1, "startSchedule": "2026-12-01T18:00:00.000Z", "duration": duration,
                 "chargingRateUnit": "A",
                 "chargingSchedulePeriod": [{"startPeriod": s, "limit": v} for s, v in limits]},
                {"id": 2, "chargingRateUnit": "W",
                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1.0}]}]}


def test_ocpp_201_profiles_and_schedule_shape() -> None:
    store = ProfileStore()
    station = install(store, p201(10, "ChargingStationMaxProfile", 0, [(0, 24)], 86400), 0,
                      version="2.0.1")
    assert station.purpose is Purpose.STATION_MAX and len(station.schedules) == 2
    assert station.schedule.start == T0 and station.schedule.id == 1
    install(store, p201(11, "TxProfile", 0, [(0, 32), (300, 12)], transactionId="tx-9"), 2,
            running="tx-9", version="2.0.1")
    external = profile_from_ocpp(p201(12, "ChargingStationExternalConstraints", 0, [(0, 20)]),
                                 "2.0.1", 0)
    assert store.validate_install(external, 0, None) is not None  # not settable by the CSMS
    store.install(external)  # ... but the local EMS may install it
    comp = composite_schedule(store, 2, T0, 900, transaction_id="tx-9", max_limit=32)
    assert periods(comp) == [(0, 20), (300, 12), (600, 24)]
    assert comp.to_ocpp("2.0.1") == {
        "evseId": 2, "duration": 900, "scheduleStart": "2026-12-01T18:00:00Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 20.0},
                                   {"startPeriod": 300, "limit": 12.0},
                                   {"startPeriod": 600, "limit": 24.0}]}



def test_grid_composite_sums_the_evses_under_the_station_maximum() -> None:
    """EVSE / connector 0 reports the whole station's expected consumption (OCTT 2.0.1 TC_K_22_CS)."""
    store = ProfileStore()
    install(store, p16(1, "ChargePointMaxProfile", 0, [(0, 40), (200, 100)], None), 0)
    install(store, p16(2, "TxDefaultProfile", 0, [(0, 6), (100, 16)], None), 0)
    install(store, p16(3, "TxDefaultProfile", 1, [(0, 10)], 50), 2)
    evses = [composite_schedule(store, c, T0, 300, max_limit=32) for c in (1, 2, 3)]
    grid = grid_composite(composite_schedule(store, 0, T0, 300, max_limit=96), evses)
    assert grid.connector == 0 and grid.duration_s == 300
    assert periods(grid) == [(0, 22), (50, 18), (100, 40), (200, 48)]
    unconstrained = composite_schedule(ProfileStore(), 1, T0, 300)
    assert periods(grid_composite(composite_schedule(store, 0, T0, 300), [unconstrained])) == [(0, 40), (200, 100)]
    with pytest.raises(ValueError):
        grid_composite(composite_schedule(store, 0, T0, 300), [composite_schedule(store, 1, T0, 200)])

# ----------------------------------------------------------------- store rules

def test_store_replaces_by_id_and_by_purpose_stack_level_connector() -> None:
    store = ProfileStore()
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 16)], None), 1)
    replaced = store.install(profile_from_ocpp(p16(1, "TxDefaultProfile", 2, [(0, 8)], None),
                                               "1.6", 1))
    assert [p.stack_level for p in replaced] == [0] and len(store) == 1
    store.install(profile_from_ocpp(p16(5, "TxDefaultProfile", 2, [(0, 6)], None), "1.6", 1))
    assert [p.id for p in store.profiles(1)] == [5]
    store.install(profile_from_ocpp(p16(6, "TxDefaultProfile", 2, [(0, 6)], None), "1.6", 2))
    store.install(profile_from_ocpp(p16(7, "TxDefaultProfile", 1, [(0, 6)], None), "1.6", 2))
    assert [p.id for p in store.profiles(2)] == [6, 7]  # highest stack level first
    assert len(store) == 3


def test_clear_matching_semantics() -> None:
    store = ProfileStore()
    install(store, p16(1, "ChargePointMaxProfile", 0, [(0, 32)], None), 0)
    install(store, p16(2, "TxDefaultProfile", 0, [(0, 16)], None), 0)
    install(store, p16(3, "TxDefaultProfile", 1, [(0, 16)], None), 1)
    install(store, p16(4, "TxDefaultProfile", 1, [(0, 16)], None), 2)
    assert store.clear(id=99) == 0
    assert store.clear(id=1, purpose="TxDefaultProfile") == 1  # id alone decides
    assert store.clear(purpose="TxDefaultProfile", stack_level=1) == 2
    assert store.clear(connector=1) == 0
    assert store.clear(connector=0, purpose=Purpose.TX_DEFAULT) == 1
    assert len(store) == 0


@pytest.mark.parametrize("payload,connector,running,reason", [
    (p16(1, "TxProfile", 0, [(0, 8)], None), 1, None, "without an active transaction"),
    (p16(1, "TxProfile", 0, [(0, 8)], None, tx=5), 1, 6, "does not match"),
    (p16(1, "TxProfile", 0, [(0, 8)], None), 0, 5, "connector > 0"),
    (p16(1, "ChargePointMaxProfile", 0, [(0, 8)], None), 1, None, "connector 0"),
    (p16(1, "TxDefaultProfile", 4, [(0, 8)], None), 1, None, "stack level"),
    (p16(1, "TxDefaultProfile", -1, [(0, 8)], None), 1, None, "stack level"),
    (p16(1, "TxDefaultProfile", 0, [(0, 1), (10, 2), (20, 3), (30, 4)], None), 1, None,
     "exceed the maximum"),
    (p16(1, "TxDefaultProfile", 0, [(10, 8)], None), 1, None, "start at 0"),
    (p16(1, "TxDefaultProfile", 0, [(0, 8), (0, 9)], None), 1, None, "increasing"),
    (p16(1, "TxDefaultProfile", 0, [(0, 8)], None, unit="W"), 1, None, "not supported"),
    (p16(1, "TxDefaultProfile", 0, [(0, 8)], None, kind="Recurring"), 1, None, "recurrencyKind"),
    (p16(1, "TxDefaultProfile", 0, [(0, 8)], None, valid_from=at(10), valid_to=at(5)), 1, None,
     "validTo"),
])
def test_validate_install_rejections(payload, connector, running, reason) -> None:
    store = ProfileStore(max_stack_level=3, max_periods=3, allowed_units=("A",))
    profile = profile_from_ocpp(payload, "1.6", connector)
    result = store.validate_install(profile, connector, running)
    assert result is not None and reason in result


def test_validate_install_max_profiles_counts_replacements() -> None:
    store = ProfileStore(max_profiles=1)
    install(store, p16(1, "TxDefaultProfile", 0, [(0, 8)], None), 1)
    same_slot = profile_from_ocpp(p16(2, "TxDefaultProfile", 0, [(0, 9)], None), "1.6", 1)
    other = profile_from_ocpp(p16(3, "TxDefaultProfile", 1, [(0, 9)], None), "1.6", 1)
    assert store.validate_install(same_slot, 1, None) is None
    assert "more than 1" in store.validate_install(other, 1, None)


def test_timestamps_parse_robustly() -> None:
    expected = datetime(2026, 12, 1, 18, 0, tzinfo=timezone.utc)
    for text in ("2026-12-01T18:00:00Z", "2026-12-01T18:00:00.000Z", "2026-12-01T19:00:00+01:00",
                 "2026-12-01T18:00:00"):
        assert parse_datetime(text) == expected
    assert format_datetime(expected + timedelta(milliseconds=250)) == "2026-12-01T18:00:00.250Z"
    with pytest.raises(ValueError):
        profile_from_ocpp(p16(1, "TxDefaultProfile", 0, [(0, 8)], None), "2.1")


# ----------------------------------------------------------------- property

PURPOSES = ["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"]
profile_spec = st.tuples(
    st.sampled_from(PURPOSES), st.integers(0, 3), st.sampled_from([0, 1]),  # connector (TxDefault)
    st.integers(-200, 600),  # startSchedule offset from T0
    st.one_of(st.none(), st.integers(1, 900)),  # duration
    st.one_of(st.none(), st.integers(-100, 1200)),  # validTo offset
    st.lists(st.tuples(st.integers(1, 500), st.integers(0, 64)), max_size=3),
    st.integers(0, 64))


def _reference_leading(raw: list[tuple[int, dict]], t: datetime) -> dict[str, float]:
    """Leading limit per purpose, computed directly from the wire dicts (Absolute, A only)."""
    best: dict[str, tuple[int, float]] = {}
    tx_valid = False
    # a connector-specific TxDefaultProfile replaces the connector-0 one of the same level
    own = {d["stackLevel"] for c, d in raw
           if c == 1 and d["chargingProfilePurpose"] == "TxDefaultProfile"}
    for connector, d in raw:
        if connector == 0 and d["chargingProfilePurpose"] == "TxDefaultProfile" \
                and d["stackLevel"] in own:
            continue
        valid_to = parse_datetime(d.get("validTo"))
        if valid_to is not None and t >= valid_to:
            continue
        tx_valid |= d["chargingProfilePurpose"] == "TxProfile"
        s = d["chargingSchedule"]
        offset = (t - parse_datetime(s["startSchedule"])).total_seconds()
        if offset < 0 or ("duration" in s and offset >= s["duration"]):
            continue
        limit = [p["limit"] for p in s["chargingSchedulePeriod"] if p["startPeriod"] <= offset][-1]
        key = d["chargingProfilePurpose"]
        if key not in best or d["stackLevel"] > best[key][0]:
            best[key] = (d["stackLevel"], limit)
    leading = {k: v for k, (_, v) in best.items()}
    if tx_valid:
        leading.pop("TxDefaultProfile", None)
    return leading


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(profile_spec, max_size=6), st.lists(st.integers(0, 999), min_size=1, max_size=8))
def test_composite_never_exceeds_leading_limits(specs, instants) -> None:
    store, payloads = ProfileStore(), {}
    for pid, (purpose, stack, conn, start, duration, valid_to, steps, first) in enumerate(specs):
        connector = {"ChargePointMaxProfile": 0, "TxProfile": 1}.get(purpose, conn)
        changes = dict([(0, first), *steps])
        payloads[pid] = p16(pid, purpose, stack, sorted(changes.items()), duration,
                            start=at(start), valid_to=None if valid_to is None else at(valid_to))
        store.install(profile_from_ocpp(payloads[pid], "1.6", connector))
    raw = [(p.connector, payloads[p.id]) for p in store]
    comp = composite_schedule(store, 1, T0, 1000, transaction_id=1)
    starts = [p.start_s for p in comp.periods]
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(a.limit != b.limit for a, b in zip(comp.periods, comp.periods[1:]))
    for offset in instants:
        t = at(offset)
        limit = limit_at(store, 1, t, transaction_id=1)
        assert comp.period_at(offset).limit == limit
        leading = _reference_leading(raw, t)
        if not leading:
            assert limit is None
            continue
        assert limit is not None and limit <= min(leading.values())
        if "ChargePointMaxProfile" in leading:
            assert limit <= leading["ChargePointMaxProfile"]
        assert limit == min(leading.values())
