"""A cloud-managed site run for real: evhil's CSMS allocates, OCPP-J carries the limits, evhil's charge point
emulators enforce them on plant ports.

``run_cloud_site(scenario, inner)`` builds one single-connector charge point per scenario port, each
connector a port of one plant (stepped in real time), and the CSMS they connect to over WebSockets on
127.0.0.1. The scenario's EVs arrive through the control seam (plug in, present a token: the charge point
authorises and starts a transaction) and leave by unplugging. On the CSMS side the controller sees only
what a cloud sees: which transactions run (StartTransaction / StopTransaction), each connector's current
from its MeterValues (``Current.Import`` every ``meter_interval_s``), the site meter and the site limit.
Every ``period_s`` and on every transaction start or end it re-allocates with ``inner`` and sends
TxProfiles (``hil.controllers.cloud``): decreases first, increases once the decreases were accepted.

The result is a ``hil.simulation.RunResult`` (site current sampled at ``sample_s`` from the site meter),
so ``hil.metrics.measure`` judges it exactly as it judges an in-memory run.

Units: seconds (wall clock: the run is real time), A per phase, kWh.
"""

from __future__ import annotations

import asyncio
import time as wallclock
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hil.clock import RealClock
from hil.controllers.cloud import plan_changes, quantise_profile, tx_default_profile, tx_profile
from hil.controllers.observation import Array, Controller, Observation
from hil.ocpp.charge_point import ChargePoint
from hil.ocpp.csms import CSMS, VALID_TOKEN
from hil.ocpp.outlet import Outlet
from hil.ocpp.rpc import CALL, CALLRESULT, Frame
from hil.ocpp.uplink import BackOff
from hil.plant import EV, Battery, Plant, PlantRunner, Port, Site
from hil.scenarios import Scenario
from hil.simulation import RunResult, SimulationConfig, event_times, limit_trace


@dataclass
class _Connector:
    """What the CSMS knows about one charge point's only connector."""

    transaction: int | None = None
    current_a: float = 0.0
    """Last Current.Import from MeterValues [A]."""
    applied_a: float = 0.0
    """The limit the charge point accepted last [A]."""


@dataclass
class CloudSiteResult:
    """The run, and what crossed the wire."""

    run: RunResult
    profiles_sent: int
    profiles_accepted: int
    decisions: int
    apply_latency_s: Array
    """Per SetChargingProfile: from the decision until the charge point accepted it [s]."""
    enforced_a: dict[str, float | None] = field(default_factory=dict)
    """At the end: each charge point's composite limit, as it reports it."""
    allocated_a: dict[str, float] = field(default_factory=dict)
    """At the end: what the CSMS allocated to each charge point."""


async def run_cloud_site(
    scenario: Scenario, inner: Controller, *, period_s: float = 5.0, default_a: float = 0.0,
    meter_interval_s: int = 1, sample_s: float = 0.1, connect_timeout_s: float = 10.0,
) -> CloudSiteResult:
    """Run ``scenario`` (times in wall-clock seconds from the start) with ``inner`` deciding at the CSMS."""
    n, v = scenario.ports, scenario.phase_voltage
    plant = Plant([Port(f"p{k + 1}", ev=None) for k in range(n)],
                  Site(phase_voltage=v, limit_a=scenario.limit_a, unmanaged_w=(scenario.unmanaged_a * v,) * 3))  # type: ignore[arg-type]
    runner = PlantRunner(plant, RealClock(), period=0.02).start()
    csms = await CSMS(port=0, versions=("1.6",), heartbeat_interval=300).start()
    ids = [f"CLOUD-{k + 1:02d}" for k in range(n)]
    outlets = [Outlet(plant, f"p{k + 1}", max_current=scenario.evse_max_a) for k in range(n)]
    known = [_Connector() for _ in range(n)]
    changed = asyncio.Event()
    for k, cs_id in enumerate(ids):
        csms.session(cs_id).trace.listen(lambda frame, k=k: _observe(frame, known[k], changed))
    cps = [ChargePoint(cs_id, csms.url, [outlet], backoff=BackOff(wait_minimum=0.2),
                       configure={"MeterValueSampleInterval": str(meter_interval_s),
                                  "MeterValuesSampledData": "Current.Import,Energy.Active.Import.Register"})
           for cs_id, outlet in zip(ids, outlets)]
    stats = {"sent": 0, "accepted": 0, "decisions": 0}
    latencies: list[float] = []
    try:
        for cp in cps:
            await cp.start()
        for cs_id in ids:
            await csms.session(cs_id).wait_connected(connect_timeout_s)
        for cp in cps:
            await asyncio.wait_for(cp.uplink.boot_accepted.wait(), connect_timeout_s)
        # The safe default for every transaction the CSMS has not allocated yet.
        await asyncio.gather(*(csms.session(cs_id).call_expect(
            "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": tx_default_profile(default_a)}, "Accepted")
            for cs_id in ids))

        steps = int(np.ceil(scenario.duration / sample_s))
        t_rec = np.arange(steps) * sample_s
        base, enforced, announced, unmanaged = limit_trace(scenario, t_rec)
        site_rec = np.zeros((steps, 3))
        sessions = sorted(scenario.sessions, key=lambda s: s.arrival)
        kwh_at_arrival: dict[int, float] = {}
        delivered = np.zeros(len(sessions))
        t0 = asyncio.get_running_loop().time()
        now = lambda: asyncio.get_running_loop().time() - t0  # noqa: E731 - the run's clock
        control = asyncio.ensure_future(_control(
            scenario, inner, csms, ids, known, changed, plant, period_s, default_a, now, announced, base, sample_s,
            stats, latencies))
        wall0 = wallclock.perf_counter()
        arrived = departed = 0
        departures = sorted((s.departure, k) for k, s in enumerate(sessions))
        for step in range(steps):
            target = step * sample_s
            wait = target - now()
            if wait > 0:
                await asyncio.sleep(wait)
            while arrived < len(sessions) and sessions[arrived].arrival <= now():
                s = sessions[arrived]
                with plant.lock:
                    plant.port(f"p{s.port + 1}").ev = EV(
                        battery=Battery(capacity_kwh=max(4 * s.energy_kwh, 40.0), soc=0.2),
                        plugged_in=False, phases=tuple(p + 1 for p in s.phases))
                kwh_at_arrival[arrived] = outlets[s.port].energy_wh() / 1000.0
                await cps[s.port].plug_in(1)
                await cps[s.port].present_token(VALID_TOKEN, 1)
                arrived += 1
            while departed < len(departures) and departures[departed][0] <= now():
                k = departures[departed][1]
                s = sessions[k]
                delivered[k] = outlets[s.port].energy_wh() / 1000.0 - kwh_at_arrival.get(k, 0.0)
                await cps[s.port].unplug(1)
                departed += 1
            site_rec[step] = plant.reading("site").current
        wall = wallclock.perf_counter() - wall0
        for k, s in enumerate(sessions):
            if k in kwh_at_arrival and s.departure > scenario.duration - 1e-9:
                delivered[k] = outlets[s.port].energy_wh() / 1000.0 - kwh_at_arrival[k]
        enforced_now = {cs_id: cp.limit(1) for cs_id, cp in zip(ids, cps)}
        allocated = {cs_id: c.applied_a for cs_id, c in zip(ids, known)}
        control.cancel()
        await asyncio.gather(control, return_exceptions=True)
    finally:
        for cp in cps:
            await cp.stop()
        await csms.stop()
        runner.stop()

    requested = np.array([s.energy_kwh for s in sessions])
    run = RunResult(
        scenario=scenario, controller=f"cloud/{inner.name} over OCPP", architecture="cloud",
        config=SimulationConfig(dt=sample_s, control_period=period_s), t=t_rec, site_a=site_rec,
        limit_a=np.repeat(enforced[:, None], 3, axis=1), price=scenario.tariff.prices(t_rec, scenario.start_h),
        port_t=np.zeros(0), port_a=np.zeros((0, n)), port_kwh=np.zeros((0, n)), session_ids=[s.id for s in sessions],
        requested_kwh=requested, delivered_kwh=np.minimum(delivered, requested), setpoint_changes=np.zeros(len(sessions)),
        session_hours=np.array([(s.departure - s.arrival) / 3600.0 for s in sessions]), step_ms=np.zeros(0),
        fallback_s=0.0, event_times=event_times(scenario), wall_s=wall,
    )
    return CloudSiteResult(run, stats["sent"], stats["accepted"], stats["decisions"], np.asarray(latencies),
                           enforced_now, allocated)


def _observe(frame: Frame, c: _Connector, changed: asyncio.Event) -> None:
    """Follow one charge point's transactions and meter values from the CSMS's trace."""
    if frame.direction == "sent" and frame.message_type == CALLRESULT and frame.action == "StartTransaction":
        c.transaction, c.applied_a, c.current_a = int(frame.payload["transactionId"]), float("nan"), 0.0
        changed.set()
    elif frame.direction == "received" and frame.is_call and frame.action == "StopTransaction":
        c.transaction, c.current_a, c.applied_a = None, 0.0, 0.0
        changed.set()
    elif frame.direction == "received" and frame.message_type == CALL and frame.action == "MeterValues":
        for value in frame.payload.get("meterValue", [])[-1:]:
            for sv in value.get("sampledValue", []):
                if sv.get("measurand") == "Current.Import":
                    c.current_a = float(sv["value"])


async def _control(
    scenario: Scenario, inner: Controller, csms: CSMS, ids: list[str], known: list[_Connector], changed: asyncio.Event,
    plant: Plant, period_s: float, default_a: float, now: Any, announced: Array, base: Array, sample_s: float,
    stats: dict[str, int], latencies: list[float],
) -> None:
    """The CSMS-side controller: allocate every ``period_s`` and on every transaction change."""
    n = len(ids)
    phases = np.zeros((n, 3))
    ev_max = np.full(n, scenario.evse_max_a)
    arrival = np.zeros(n)
    departure = np.full(n, np.inf)
    by_port = {s.port: s for s in scenario.sessions}
    for port, s in by_port.items():
        phases[port, list(s.phases)] = 1.0
    while True:
        try:
            await asyncio.wait_for(changed.wait(), period_s)
        except asyncio.TimeoutError:
            pass
        changed.clear()
        t = now()
        k = min(int(t / sample_s), len(announced) - 1)
        for c in known:
            if c.transaction is not None and np.isnan(c.applied_a):
                c.applied_a = default_a  # a new transaction runs on the TxDefaultProfile
        connected = np.array([c.transaction is not None for c in known])
        for port, s in by_port.items():  # the driver's request, as a cloud learns it from the app
            if connected[port]:
                arrival[port], departure[port] = s.arrival, s.departure
        obs = Observation(
            time=t, connected=connected, phases=phases, ev_max_a=ev_max,
            measured_a=np.array([c.current_a for c in known]), remaining_kwh=np.where(connected, 1e3, 0.0),
            arrival=arrival, departure=departure, site_a=np.asarray(plant.reading("site").current), site_age_s=0.0,
            limits={"breaker": np.full(3, base[k]), "contract": np.full(3, announced[k])},
            price=0.0, phase_voltage=scenario.phase_voltage,
        )
        stats["decisions"] += 1
        decided = t
        target = quantise_profile(np.where(connected, inner.decide(obs).setpoints_a, 0.0))
        applied = np.array([c.applied_a for c in known])
        down, up = plan_changes(applied, target)
        for wave in (down, up):
            wave = [int(i) for i in wave if connected[i]]
            answers = await asyncio.gather(*(
                csms.session(ids[i]).call("SetChargingProfile", {
                    "connectorId": 1, "csChargingProfiles": tx_profile(1, known[i].transaction, float(target[i]))})
                for i in wave), return_exceptions=True)
            for i, answer in zip(wave, answers):
                stats["sent"] += 1
                if isinstance(answer, dict) and answer.get("status") == "Accepted":
                    stats["accepted"] += 1
                    known[i].applied_a = float(target[i])
                    latencies.append(now() - decided)
