"""F3: the CSMS of a cloud-managed site is unreachable for 30 minutes, and the site limit drops to 60 % a
second into the outage, so the CSMS cannot deliver the lower limit.

The site runs for real (``hil.site.cloud_run``): evhil's CSMS allocates with each reference controller and
sends OCPP 1.6 profiles over WebSockets to four charge point emulators on plant ports; the network of
every charge point is cut through the control seam. Everything runs on one scaled clock (40 x), so the
33-minute scenario takes about 50 s.

What a careful cloud architecture does (``hil.controllers.cloud``): at boot the CSMS installs on every charge
point a ChargePointMaxProfile floor, its share of the lowest limit the site may see, under a 20 s lease
(a ChargePointMaxProfile at the rating with ``validTo``) that the CSMS keeps renewing. Without the CSMS the
lease expires and every charge point falls back to its floor with no message at all; a transaction started
offline waits on the 0 A TxDefaultProfile. Meanwhile the charge points queue every transaction message and
deliver it, in order, once the network is back; the CSMS re-allocates as soon as it hears from them.
"""

from __future__ import annotations

import asyncio

import matplotlib
import numpy as np
import pytest

from hil.compliance.check import SETTLING_S, Event, band, check
from hil.site.cloud_run import CloudSiteResult, Outage, run_cloud_site
from hil.site.conditions import PRODUCT, controller_factory
from hil.report.measurement import Measurements
from hil.site.scenarios import GridEvent, Scenario, Session, load_tariff

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402 - after choosing the backend

pytestmark = pytest.mark.emulated_only

SCALE = 40.0
"""Simulated seconds per wall-clock second."""
OUTAGE = Outage(start_s=60.0, duration_s=1800.0)
STEP_S = 61.0
"""The limit drops to 60 % here, a second into the outage, while the charge points still hold a lease [s]."""
LIMIT_A = 64.0
END_S = 2000.0


def outage_site() -> Scenario:
    """Four 32 A ports behind 64 A: three EVs before the outage, one leaving and one arriving during it."""
    def stay(name: str, port: int, arrival: float, departure: float = END_S) -> Session:
        return Session(name, port, arrival, departure, 80.0, 32.0, (0, 1, 2))

    return Scenario(
        name="f3-csms-outage", seed=0, ports=4, phase_voltage=230.0, evse_max_a=32.0, limit_a=LIMIT_A,
        breaker_a=LIMIT_A, unmanaged_a=0.0, tariff=load_tariff("flat"), start_h=0.0, duration=END_S,
        sessions=(stay("a", 0, 5.0), stay("b", 1, 10.0, 1000.0), stay("c", 2, 15.0), stay("d", 3, 600.0)),
        events=(GridEvent("limit_step", STEP_S, fraction=0.6),), port_phase=(0, 1, 2, 0))


CONTROLLERS = ("sequential", "timer", "parallel", "priority", "adaptive")
"""The allocation the CSMS runs (the cloud-managed architecture's inner controller)."""


def outage_run(controller_name: str) -> CloudSiteResult:
    scenario = outage_site()
    inner = controller_factory(controller_name)(scenario)
    return asyncio.run(run_cloud_site(scenario, inner, period_s=10.0, meter_interval_s=10, sample_s=1.0,
                                      scale=SCALE, outage=OUTAGE))


def _plot(result: CloudSiteResult) -> plt.Figure:
    run = result.run
    fig, (site_ax, cp_ax) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    site_ax.plot(run.t, run.site_a[:, 0], label="site current, phase 1")
    site_ax.plot(run.t, band(run.limit_a[:, 0]), "k--", label="tolerance band")
    for ax in (site_ax, cp_ax):
        ax.axvspan(OUTAGE.start_s, OUTAGE.start_s + OUTAGE.duration_s, color="0.9", label="CSMS unreachable")
    site_ax.set_ylabel("A")
    site_ax.legend(loc="upper right")
    for k in range(result.enforced_trace_a.shape[1]):
        cp_ax.plot(run.t, result.enforced_trace_a[:, k], label=f"CLOUD-{k + 1:02d} composite limit")
    cp_ax.axhline(result.offline_a, color="k", linestyle=":", label="offline floor")
    cp_ax.set_xlabel("s")
    cp_ax.set_ylabel("A")
    cp_ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def test_f3_csms_unreachable_30_min_during_a_limit_reduction(controller_name: str, measurements: Measurements) -> None:
    """The CSMS is unreachable for 30 min during a limit reduction: the site stays inside the band on what the
    charge points do alone (their offline profiles); every transaction message is queued and delivered in
    order after reconnection, none lost (OCPP 1.6 §4.7, §3.10); the CSMS re-allocates and the site is back
    inside the band within the cloud settling time (60 s). How the architecture keeps the site safe offline
    (here a floor profile under a lease) is its own: the report shows each charge point's limit."""
    if controller_name == PRODUCT:
        pytest.skip("the outage is cut between evhil's own CSMS and its charge points; a product's own offline "
                    "behaviour needs a network seam between it and the chargers, which this test does not have yet")
    measurements.parameter("controller", controller_name)
    r = outage_run(controller_name)
    report = r.outage
    assert report is not None
    run, settling = r.run, SETTLING_S["cloud"]
    assert settling is not None
    measurements.parameter("architecture", f"cloud-managed (OCPP 1.6, {controller_name} allocation at the CSMS)")
    measurements.parameter("clock scale", SCALE)
    measurements.parameter("lease", f"{r.lease_s:g} s")
    fig = _plot(r)
    measurements.figure(fig, "site current and each charge point's limit through the outage")
    plt.close(fig)
    assert report.start_s < STEP_S < report.start_s + report.duration_s, "the limit step must fall inside the outage"

    # Every transaction message queued offline reached the CSMS, in the order produced, none lost.
    measurements.record("outage duration", report.duration_s, "s", low=1800.0)
    measurements.record("transaction messages queued offline", report.queued, "", low=1)
    measurements.record("queued messages delivered after reconnection", report.delivered, "", low=report.queued)
    measurements.record("transaction messages lost", report.lost, "", high=0)
    measurements.record("transaction messages out of order", report.out_of_order, "", high=0)
    per = report.per_charge_point
    assert per["CLOUD-02"]["queued"] >= 1 and per["CLOUD-04"]["queued"] >= 2  # a stop and a start, with meter values
    for cs_id, counts in per.items():
        assert counts["lost"] == 0 and counts["lost_any"] == 0 and counts["out_of_order"] == 0, (cs_id, counts)
    assert report.queued >= 3 * OUTAGE.duration_s / 10 * 0.9  # every running transaction sampled every 10 s

    # The site current against the limit, with the cloud settling time from the step.
    verdict = check(run.t, run.site_a, run.limit_a, [Event(STEP_S)], settling_s=settling,
                    breaker_a=run.scenario.breaker_a, voltage=run.scenario.phase_voltage)
    measurements.record("max overshoot", verdict.max_overshoot_a, "A")
    measurements.record("overshoot integral", verdict.overshoot_integral_as, "A s")
    measurements.record("settling after the limit step", np.inf if verdict.worst_settling_s is None
                        else verdict.worst_settling_s, "s", high=settling)
    measurements.record("reconnection after the network is back", report.reconnect_s, "s")
    recovery = np.inf if report.reallocated_s is None else report.reallocated_s
    measurements.record("recovery: network back to re-allocation answered", recovery, "s", high=settling)
    measurements.record("recovery: network back to the site in band", np.inf if report.back_in_band_s is None
                        else report.back_in_band_s, "s", high=settling)
    assert verdict.passed, "; ".join(verdict.failures())
    # After the recovery each charge point enforces what the CSMS allocates again; the one whose EV left
    # during the outage has no transaction, so nothing to enforce.
    for cs_id, allocated in r.allocated_a.items():
        if cs_id != "CLOUD-02":
            assert r.enforced_a[cs_id] == pytest.approx(allocated), (
                f"{cs_id} enforces {r.enforced_a[cs_id]} A after the recovery; the CSMS allocated it {allocated} A")
    assert r.allocated_a["CLOUD-02"] == 0.0 and r.enforced_a["CLOUD-02"] is None
