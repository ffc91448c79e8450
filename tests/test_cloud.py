"""Cloud-managed load balancing: the CSMS allocates, OCPP charging profiles carry the limits.

The in-memory model (``CloudManaged``) and the real thing (evhil's CSMS sending SetChargingProfile over
WebSockets to evhil's charge point emulators on plant ports, in real time) run the same short scenario:
three EVs arriving behind a 50 A feeder, a limit step down to 30 A, one EV leaving (18 s).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from hil.clock import ScaledClock
from hil.controllers.cloud import (
    FLOOR_PROFILE_ID, LEASE_PROFILE_ID, CloudManaged, offline_share, plan_changes, quantise_profile,
    station_max_profile, tx_profile,
)
from hil.site.cloud_run import CloudSiteResult, run_cloud_site
from hil.controllers.reference import Parallel
from hil.site.metrics import measure
from hil.ocpp import smart_charging as sc
from hil.ocpp.uplink import Calendar
from hil.site.scenarios import GridEvent, Scenario, Session, load_tariff, load_scenario
from hil.site.simulation import SimulationConfig, simulate


def three_evs() -> Scenario:
    sessions = (Session("a", 0, 1.0, 13.0, 50.0, 32.0, (0, 1, 2)), Session("b", 1, 3.0, 60.0, 50.0, 32.0, (0, 1, 2)),
                Session("c", 2, 5.0, 60.0, 50.0, 32.0, (0, 1, 2)))
    return Scenario(name="cloud-three-evs", seed=0, ports=3, phase_voltage=230.0, evse_max_a=32.0, limit_a=50.0,
                    breaker_a=50.0, unmanaged_a=0.0, tariff=load_tariff("flat"), start_h=0.0, duration=18.0,
                    sessions=sessions, events=(GridEvent("limit_step", 9.0, fraction=0.6),), port_phase=(0, 1, 2))


FINE = SimulationConfig(dt=0.1, control_period=0.1, ev_delay=0.1, ev_lag=0.05)


def test_decreases_go_in_the_first_wave() -> None:
    down, up = plan_changes(np.array([16.0, 16.0, 0.0]), np.array([10.0, 20.0, 0.0]))
    assert down.tolist() == [0] and up.tolist() == [1]
    assert quantise_profile(np.array([9.47, 6.0, -1.0])).tolist() == pytest.approx([9.4, 6.0, 0.0])


def test_tx_profile_is_what_the_charge_point_enforces() -> None:
    profile = sc.profile_from_ocpp(tx_profile(1, 7, 9.4), "1.6")
    assert profile.purpose is sc.Purpose.TX and profile.transaction_id == 7
    assert profile.schedule.periods[0].limit == pytest.approx(9.4)


def test_without_its_lease_a_charge_point_falls_back_to_the_floor() -> None:
    floor = offline_share(38.4, 2.0, 4)
    assert floor == pytest.approx(9.1)  # (38.4 - 2) / 4, rounded down to 0.1 A
    issued = datetime(2026, 1, 1, 12, 0, 0, 500_000, tzinfo=timezone.utc)
    store = sc.ProfileStore()
    for raw, connector in ((station_max_profile(FLOOR_PROFILE_ID, 0, floor, issued), 0),
                           (station_max_profile(LEASE_PROFILE_ID, 1, 32.0, issued, issued + timedelta(seconds=20)), 0),
                           (tx_profile(1, 7, 16.0), 1)):
        profile = sc.profile_from_ocpp(raw, "1.6")
        assert store.validate_install(profile, connector, 7) is None
        store.install(profile, connector)
    at = lambda s: sc.limit_at(store, 1, issued + timedelta(seconds=s), transaction_start=issued, transaction_id=7)  # noqa: E731
    assert at(0.0) == pytest.approx(16.0)  # in force from the second it was issued: the lease lifts the floor
    assert at(19.0) == pytest.approx(16.0)
    assert at(20.5) == pytest.approx(floor)  # lease expired: the TxProfile is capped by the floor


def test_a_calendar_on_a_scaled_clock_runs_fast_from_the_wall_clock_date() -> None:
    clock = ScaledClock(100.0)
    first, second = Calendar.of(clock), Calendar.of(clock)
    start, wall = first.now(), datetime.now(timezone.utc)
    assert abs((start - wall).total_seconds()) < 1.0
    asyncio.run(first.sleep(50.0))  # half a second of wall-clock time
    assert 50.0 <= (second.now() - start).total_seconds() < 60.0
    assert (datetime.now(timezone.utc) - wall).total_seconds() < 0.6
    assert abs((first.epoch - second.epoch).total_seconds()) < 1e-3  # one clock, one calendar


def test_model_new_sessions_wait_on_the_default_until_allocated() -> None:
    scenario = three_evs()
    run = simulate(scenario, CloudManaged(Parallel(), period_s=5.0, latency_s=1.0), FINE)
    site = run.site_a[:, 0]
    at = lambda t: float(site[int(round(t / FINE.dt))])  # noqa: E731
    assert at(1.5) < 1.0  # the first EV arrived at 1 s: TxDefaultProfile 0 A until its profile lands at 2 s
    assert at(2.9) == pytest.approx(32.0, abs=0.5)
    # The limit step at 9 s is met at the next periodic allocation (10 s) plus the latency, not before.
    assert at(10.5) == pytest.approx(48.0, abs=0.5) and at(11.5) == pytest.approx(28.2, abs=0.5)
    # The departure at 13 s triggers an allocation: only increases, one latency later.
    assert at(13.5) == pytest.approx(18.8, abs=0.5) and at(14.5) == pytest.approx(28.4, abs=0.5)
    m = measure(run)
    assert m.architecture == "cloud" and m.compliance.passed


def test_cloud_on_a_shipped_scenario_passes_with_cloud_settling() -> None:
    scenario = load_scenario("workplace-stress", ports=12)
    cloud = measure(simulate(scenario, CloudManaged(Parallel()), SimulationConfig(dt=5.0, control_period=5.0)))
    assert cloud.compliance.passed, cloud.compliance.to_dict()
    assert cloud.compliance.settling_s == 60.0
    assert cloud.compliance.worst_settling_s is not None and cloud.compliance.worst_settling_s <= 60.0


@pytest.fixture(scope="module")
def over_ocpp() -> CloudSiteResult:
    return asyncio.run(run_cloud_site(three_evs(), Parallel(), period_s=5.0))  # about 19 s of real time


def test_limits_arrive_as_accepted_profiles_and_are_enforced(over_ocpp: CloudSiteResult) -> None:
    assert over_ocpp.profiles_sent >= 6 and over_ocpp.profiles_accepted == over_ocpp.profiles_sent
    # At the end the two remaining charge points enforce exactly what the CSMS allocated (30 A limit).
    for cs_id in ("CLOUD-02", "CLOUD-03"):
        assert over_ocpp.enforced_a[cs_id] == pytest.approx(over_ocpp.allocated_a[cs_id])
        assert over_ocpp.allocated_a[cs_id] == pytest.approx(14.2, abs=0.15)
    assert over_ocpp.enforced_a["CLOUD-01"] is None  # its transaction ended: no limit in force
    assert float(np.max(over_ocpp.apply_latency_s)) < 1.0


def test_over_ocpp_passes_and_matches_the_model(over_ocpp: CloudSiteResult) -> None:
    real = measure(over_ocpp.run)
    assert real.compliance.passed, real.compliance.to_dict()
    assert real.compliance.worst_settling_s is not None and real.compliance.worst_settling_s <= 6.0
    model = simulate(three_evs(), CloudManaged(Parallel(), period_s=5.0,
                                               latency_s=float(np.median(over_ocpp.apply_latency_s))), FINE)
    assert measure(model).compliance.verdict == real.compliance.verdict
    assert over_ocpp.run.delivered_kwh.sum() == pytest.approx(model.delivered_kwh.sum(), rel=0.03)
