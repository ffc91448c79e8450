"""Load-limit compliance of the cloud-managed architecture: the site limit steps down to 40 % and the CSMS
delivers the new allocation to the charge points as OCPP 1.6 charging profiles, judged with the cloud
settling time (60 s).

The site runs for real (``hil.site.cloud_run``): evhil's CSMS allocates with each reference controller every
15 s and sends SetChargingProfile over WebSockets to four charge point emulators on plant ports, decreases
first; each charge point also holds the ChargePointMaxProfile floor and lease the CSMS installed at boot
(``hil.controllers.cloud``). The judgement is the site's current against its limit and that every charge
point enforces what the CSMS sent it (OCPP 1.6 §3.13); how the CSMS shares the limit is its own. On a clock
scaled 6 x the two minutes take about 20 s.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hil.compliance.check import SETTLING_S, Event, band, check
from hil.site.cloud_run import run_cloud_site
from hil.site.conditions import PRODUCT, controller_factory
from hil.report.measurement import Measurements
from hil.site.scenarios import GridEvent, Scenario, Session, load_tariff

SCALE = 6.0
"""Simulated seconds per wall-clock second."""
PERIOD_S = 15.0
"""The CSMS re-allocates this often [s]."""
LIMIT_A = 64.0
STEP_S = 55.0
FRACTION = 0.4
"""Below what any controller that charges even one EV at its maximum (32 A) draws: the step binds for all."""


def four_evs() -> Scenario:
    """Four EVs that want 32 A each behind 64 A; the limit steps to 40 % at 55 s."""
    sessions = tuple(Session(name, port, 2.0 + 2 * port, 200.0, 50.0, 32.0, (0, 1, 2))
                     for port, name in enumerate("abcd"))
    return Scenario(name="cloud-profile-step", seed=0, ports=4, phase_voltage=230.0, evse_max_a=32.0, limit_a=LIMIT_A,
                    breaker_a=LIMIT_A, unmanaged_a=0.0, tariff=load_tariff("flat"), start_h=0.0, duration=120.0,
                    sessions=sessions, events=(GridEvent("limit_step", STEP_S, fraction=FRACTION),),
                    port_phase=(0, 1, 2, 0))


CONTROLLERS = ("sequential", "timer", "parallel", "priority", "adaptive")
"""The allocation the CSMS runs (the cloud-managed architecture's inner controller)."""


def test_cloud_limit_step_delivered_as_charging_profiles(controller_name: str, measurements: Measurements) -> None:
    """The limit steps to 40 %: the CSMS sends lower TxProfiles, the charge points enforce them, and the site is
    inside the new band within the cloud settling time. When the site drew no more than the new band before
    the step, the step reduces nothing: it skips."""
    if controller_name == PRODUCT:
        pytest.skip("this runs evhil's own cloud-managed architecture; a product that balances a site over OCPP is "
                    "judged by the load-limit conditions (dut.architecture: cloud)")
    measurements.parameter("controller", controller_name)
    scenario = four_evs()
    stepped = asyncio.run(run_cloud_site(scenario, controller_factory(controller_name)(scenario), period_s=PERIOD_S,
                                         sample_s=0.1, scale=SCALE))
    run, settling = stepped.run, SETTLING_S["cloud"]
    assert settling is not None
    measurements.parameter("architecture", f"cloud-managed (OCPP 1.6, {controller_name} allocation at the CSMS)")
    measurements.parameter("allocation period", f"{PERIOD_S:g} s")
    measurements.parameter("clock scale", SCALE)
    verdict = check(run.t, run.site_a, run.limit_a, [Event(STEP_S)], settling_s=settling,
                    breaker_a=run.scenario.breaker_a, voltage=run.scenario.phase_voltage)
    old, new = float(band(LIMIT_A)), float(band(FRACTION * LIMIT_A))
    t = run.t
    before = (t > STEP_S - 15.0) & (t < STEP_S)
    drawn = float(np.max(run.site_a[before])) if before.any() else 0.0
    if drawn <= new:
        pytest.skip(f"the site drew at most {drawn:.1f} A before the step, inside the new band ({new:.1f} A): the "
                    "step reduced nothing, nothing to measure")
    allowance = verdict.events[0]["allowance_as"]
    measurements.record("max overshoot", verdict.max_overshoot_a, "A", high=old - new)
    measurements.record("overshoot integral, worst phase", verdict.events[0]["overshoot_integral_as"], "A s",
                        high=allowance)
    measurements.record("settling time", np.inf if verdict.worst_settling_s is None else verdict.worst_settling_s,
                        "s", high=settling)
    measurements.record("profile apply latency, worst", float(np.max(stepped.apply_latency_s)), "s")
    measurements.record("profiles the charge points accepted (information)", stepped.profiles_accepted, "")
    measurements.record("profiles the CSMS sent (information)", stepped.profiles_sent, "")
    assert verdict.passed, "; ".join(verdict.failures())
    # At the end each charge point enforces what the CSMS allocated it (OCPP 1.6 §3.13: the composite limit).
    for cs_id, allocated in stepped.allocated_a.items():
        assert stepped.enforced_a[cs_id] == pytest.approx(allocated), (
            f"{cs_id} enforces {stepped.enforced_a[cs_id]} A; the CSMS allocated it {allocated} A")
