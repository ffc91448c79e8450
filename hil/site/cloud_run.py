"""A cloud-managed site run for real: evhil's CSMS allocates, OCPP-J carries the limits, evhil's charge point
emulators enforce them on plant ports.

``run_cloud_site(scenario, inner)`` builds one single-connector charge point per scenario port, each
connector a port of one plant, and the CSMS they connect to over WebSockets on 127.0.0.1. The scenario's EVs
arrive through the control seam (plug in, present a token: the charge point authorises and starts a
transaction) and leave by unplugging. On the CSMS side the controller sees only what a cloud sees: which
transactions run (StartTransaction / StopTransaction), each connector's current from its MeterValues
(``Current.Import`` every ``meter_interval_s``), the site meter and the site limit. Every ``period_s``, on
every transaction start or end and when a charge point it could not reach is heard from again, it
re-allocates with ``inner`` and sends TxProfiles (``hil.controllers.cloud``): decreases first, then
increases, then lease renewals, each wave only once the one before was answered. At boot it installs what
the charge points fall back to without it (a ChargePointMaxProfile floor under a lease it renews, the 0 A
TxDefaultProfile) and the site's tokens as the local authorisation list, so that drivers can start offline.

Everything runs on one ``ScaledClock`` (``scale`` simulated seconds per real second): the plant, the charge
points' OCPP timing and the CSMS's periods, so a 30-minute CSMS outage (``Outage``, F3: the network of every
charge point is cut) runs in a minute. The outage record compares, per charge point, the transaction
messages it produced with what the CSMS received.

The result is a ``hil.site.simulation.RunResult`` (site current sampled at ``sample_s`` from the site meter),
so ``hil.site.metrics.measure`` judges it exactly as it judges an in-memory run.

Units: simulated seconds (the scenario's times), A per phase, kWh.
"""

from __future__ import annotations

import asyncio
import json
import time as wallclock
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from hil.clock import ScaledClock
from hil.compliance.check import band, windows
from hil.controllers.cloud import (
    FLOOR_PROFILE_ID, LEASE_PROFILE_ID, offline_share, plan_changes, quantise_profile, station_max_profile,
    tx_default_profile, tx_profile,
)
from hil.controllers.observation import Array, Controller, Observation
from hil.ocpp.charge_point import ChargePoint
from hil.ocpp.csms import CSMS, VALID_TOKEN
from hil.ocpp.outlet import Outlet
from hil.ocpp.rpc import CALL, CALLRESULT, Frame
from hil.ocpp.uplink import BackOff, Calendar
from hil.plant import EV, Battery, Plant, PlantRunner, Port, Site
from hil.site.scenarios import Scenario
from hil.site.simulation import RunResult, SimulationConfig, event_times, limit_trace

CALL_TIMEOUT_S = 1.0
"""How long the CSMS waits for a charge point's answer [wall-clock s]: loopback answers take milliseconds,
and a call to a charge point whose network was just cut must not hold up the allocation."""
TRANSACTION_ACTIONS = ("StartTransaction", "StopTransaction", "MeterValues")


@dataclass(frozen=True)
class Outage:
    """The CSMS is unreachable for every charge point from ``start_s`` for ``duration_s`` [simulated s]."""

    start_s: float
    duration_s: float


@dataclass
class OutageReport:
    """What an outage did to the transaction messages, and how fast the site recovered.

    Counts are over every charge point; ``per_charge_point`` has the same counts for each (and
    ``produced``: all its transaction messages; ``lost_any``: of those, never received).
    """

    start_s: float
    """When the network was cut [scenario s]."""
    duration_s: float
    """How long it stayed cut [scenario s]."""
    queued: int
    """Transaction messages the charge points produced while offline."""
    delivered: int
    """Of those, how many the CSMS received."""
    lost: int
    out_of_order: int
    """Transaction messages (of the whole run) the CSMS received after one its charge point produced later."""
    duplicates: int
    """Transaction messages the CSMS received more than once (a transmission whose answer was lost)."""
    reconnect_s: float
    """From the network's return until every charge point was connected again [s]."""
    reallocated_s: float | None
    """From the network's return until a re-allocation was answered by every charge point [s]."""
    back_in_band_s: float | None
    """From the network's return until the site current stays in the tolerance band (0: never left it) [s]."""
    per_charge_point: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class _Playback:
    """How far the scenario has been played: the recording loop's step. The CSMS reads the site limit at
    this step, so a step the loop has not reached (say, after an outage it has begun) is not yet known,
    however late a loaded machine wakes the loop."""

    step: int = 0


@dataclass
class _Connector:
    """What the CSMS knows about one charge point's only connector."""

    transaction: int | None = None
    current_a: float = 0.0
    """Last Current.Import from MeterValues [A]."""
    applied_a: float = 0.0
    """The limit the charge point accepted last [A]."""
    lease_until: float = -np.inf
    """When the lease the charge point accepted last expires [simulated s]."""
    reachable: bool = True
    """False once a call to it went unanswered, until it is heard from again."""


@dataclass
class _Pass:
    """One allocation: when it was decided and finished [simulated s], what was sent and answered."""

    decided: float
    done: float
    sent: int
    answered: int
    accepted: int


@dataclass
class CloudSiteResult:
    """The run, and what crossed the wire."""

    run: RunResult
    profiles_sent: int
    profiles_accepted: int
    decisions: int
    apply_latency_s: Array
    """Per SetChargingProfile: from the decision until the charge point accepted it [simulated s]."""
    enforced_a: dict[str, float | None] = field(default_factory=dict)
    """At the end: each charge point's composite limit, as it reports it."""
    allocated_a: dict[str, float] = field(default_factory=dict)
    """At the end: what the CSMS allocated to each charge point."""
    enforced_trace_a: Array = field(default_factory=lambda: np.zeros((0, 0)))
    """Per sample (rows, at ``run.t``) and charge point (columns): its composite limit [A]; NaN when it runs
    no transaction."""
    offline_a: float = 0.0
    """The ChargePointMaxProfile floor each charge point holds without the CSMS [A per phase]."""
    lease_s: float = 0.0
    outage: OutageReport | None = None


async def run_cloud_site(
    scenario: Scenario, inner: Controller, *, period_s: float = 5.0, default_a: float = 0.0,
    meter_interval_s: int = 1, sample_s: float = 0.1, connect_timeout_s: float = 10.0, scale: float = 1.0,
    outage: Outage | None = None, lease_s: float = 20.0, lowest_limit_a: float | None = None,
) -> CloudSiteResult:
    """Run ``scenario`` (times in simulated seconds from the start) with ``inner`` deciding at the CSMS.

    ``scale``: simulated seconds per wall-clock second. ``outage``: cut every charge point's network for a
    while. ``lease_s``: validity of the lease that lifts the offline floor [s], longer than a period (the
    CSMS renews it at each allocation that finds less than one and a half periods of it left).
    ``lowest_limit_a``: the lowest site limit the site may see, which sizes the floor [A per phase];
    default the lowest limit of the scenario. Keep ``sample_s`` above about ``scale / 500`` s: the
    recording loop cannot take a sample much faster than every 2 ms of wall-clock time.
    """
    if lease_s <= period_s:
        raise ValueError(f"the lease ({lease_s:g} s) must outlast the allocation period ({period_s:g} s)")
    if outage is not None and outage.start_s + outage.duration_s >= scenario.duration:
        raise ValueError(f"the outage must end before the scenario ({scenario.duration:g} s)")
    n, v = scenario.ports, scenario.phase_voltage
    clock = ScaledClock(scale)
    calendar = Calendar.of(clock)
    plant = Plant([Port(f"p{k + 1}", ev=None) for k in range(n)],
                  Site(phase_voltage=v, limit_a=scenario.limit_a,
                       unmanaged_w=(scenario.unmanaged_a * v,) * 3))  # type: ignore[arg-type]
    runner = PlantRunner(plant, clock, period=min(0.02 * scale, 0.5)).start()  # 50 steps per wall-clock second
    csms = await CSMS(port=0, versions=("1.6",), heartbeat_interval=300).start()
    ids = [f"CLOUD-{k + 1:02d}" for k in range(n)]
    outlets = [Outlet(plant, f"p{k + 1}", max_current=scenario.evse_max_a) for k in range(n)]
    known = [_Connector() for _ in range(n)]
    changed = asyncio.Event()
    for k, cs_id in enumerate(ids):
        csms.session(cs_id).trace.listen(lambda frame, k=k: _observe(frame, known[k], changed))
    cps = [ChargePoint(cs_id, csms.url, [outlet], backoff=BackOff(wait_minimum=0.2), clock=clock,
                       configure={"MeterValueSampleInterval": str(meter_interval_s),
                                  "MeterValuesSampledData": "Current.Import,Energy.Active.Import.Register"})
           for cs_id, outlet in zip(ids, outlets)]
    steps = int(np.ceil(scenario.duration / sample_s))
    t_rec = np.arange(steps) * sample_s
    base, enforced, announced, unmanaged = limit_trace(scenario, t_rec)
    offline_a = offline_share(float(np.min(enforced)) if lowest_limit_a is None else lowest_limit_a,
                              float(np.max(unmanaged)), n)
    stats = {"sent": 0, "accepted": 0, "decisions": 0}
    latencies: list[float] = []
    passes: list[_Pass] = []
    network: dict[str, float] = {}
    try:
        for cp in cps:
            await cp.start()
        for cs_id in ids:
            await csms.session(cs_id).wait_connected(connect_timeout_s)
        for cp in cps:
            await asyncio.wait_for(cp.uplink.boot_accepted.wait(), connect_timeout_s)
        await asyncio.gather(*(
            _install_offline_behaviour(csms, cs_id, c, calendar, default_a, offline_a, scenario.evse_max_a, lease_s)
            for cs_id, c in zip(ids, known)))

        site_rec = np.zeros((steps, 3))
        limits_rec = np.full((steps, n), np.nan)
        sessions = sorted(scenario.sessions, key=lambda s: s.arrival)
        kwh_at_arrival: dict[int, float] = {}
        delivered = np.zeros(len(sessions))
        playback = _Playback()
        control = asyncio.ensure_future(_control(
            scenario, inner, csms, ids, known, changed, plant, period_s, default_a, calendar, announced, base, playback,
            stats, latencies, passes, offline_a, lease_s))
        reconnecting: asyncio.Future[None] | None = None
        wall0 = wallclock.perf_counter()
        arrived = departed = 0
        departures = sorted((s.departure, k) for k, s in enumerate(sessions))
        for step in range(steps):
            await calendar.sleep(step * sample_s - clock.now())
            if outage is not None:
                reconnecting = await _play_outage(outage, float(t_rec[step]), cps, clock, network,
                                                  connect_timeout_s) or reconnecting
            playback.step = step  # the CSMS learns this step's limit only now: after a cut due at it
            while arrived < len(sessions) and sessions[arrived].arrival <= t_rec[step] + 1e-9:
                s = sessions[arrived]
                with plant.lock:
                    plant.port(f"p{s.port + 1}").ev = EV(
                        battery=Battery(capacity_kwh=max(4 * s.energy_kwh, 40.0), soc=0.2),
                        plugged_in=False, phases=tuple(p + 1 for p in s.phases))
                kwh_at_arrival[arrived] = outlets[s.port].energy_wh() / 1000.0
                await cps[s.port].plug_in(1)
                await cps[s.port].present_token(VALID_TOKEN, 1)
                arrived += 1
            while departed < len(departures) and departures[departed][0] <= t_rec[step] + 1e-9:
                k = departures[departed][1]
                s = sessions[k]
                delivered[k] = outlets[s.port].energy_wh() / 1000.0 - kwh_at_arrival.get(k, 0.0)
                await cps[s.port].unplug(1)
                departed += 1
            site_rec[step] = plant.reading("site").current
            limits_rec[step] = [np.nan if (a := cp.limit(1)) is None else a for cp in cps]
        wall = wallclock.perf_counter() - wall0
        for k, s in enumerate(sessions):
            if k in kwh_at_arrival and s.departure > scenario.duration - 1e-9:
                delivered[k] = outlets[s.port].energy_wh() / 1000.0 - kwh_at_arrival[k]
        enforced_now = {cs_id: cp.limit(1) for cs_id, cp in zip(ids, cps)}
        allocated = {cs_id: c.applied_a for cs_id, c in zip(ids, known)}
        control.cancel()
        await asyncio.gather(control, return_exceptions=True)
        report = None
        if outage is not None and reconnecting is not None:
            await reconnecting
            produced = [len(cp.uplink.journal) for cp in cps]
            await asyncio.gather(*(cp.uplink.drain(connect_timeout_s) for cp in cps), return_exceptions=True)
            report = _outage_report(outage, cps, csms, produced, network, passes, t_rec, site_rec, enforced)
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
                           enforced_now, allocated, limits_rec, offline_a, lease_s, report)


async def _install_offline_behaviour(csms: CSMS, cs_id: str, c: _Connector, calendar: Calendar, default_a: float,
                                     offline_a: float, rating_a: float, lease_s: float) -> None:
    """At boot: the local list, the floor, the first lease and the TxDefaultProfile (``hil.controllers.cloud``)."""
    session = csms.session(cs_id)
    await session.call_expect("SendLocalList", {
        "listVersion": 1, "updateType": "Full",
        "localAuthorizationList": [{"idTag": VALID_TOKEN, "idTagInfo": {"status": "Accepted"}}]}, "Accepted")
    now = calendar.now()
    for profile in (station_max_profile(FLOOR_PROFILE_ID, 0, offline_a, now),
                    station_max_profile(LEASE_PROFILE_ID, 1, rating_a, now, now + timedelta(seconds=lease_s)),
                    tx_default_profile(default_a)):
        await session.call_expect("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile}, "Accepted")
    c.lease_until = calendar.clock.now() + lease_s


async def _play_outage(outage: Outage, t: float, cps: list[ChargePoint], clock: ScaledClock,
                       network: dict[str, float], timeout_s: float) -> asyncio.Future[None] | None:
    """At scenario time ``t`` [s]: cut or restore every charge point's network when due, recording when
    (``cut``, ``restored`` in scenario time, ``restored_clock``); after a restore, the task that records
    when all are connected again."""
    if "cut" not in network and t >= outage.start_s - 1e-9:
        network["cut"] = t
        await asyncio.gather(*(cp.cut_network() for cp in cps))
    if "restored" not in network and t >= outage.start_s + outage.duration_s - 1e-9:
        for cp in cps:
            await cp.restore_network()
        network["restored"], network["restored_clock"] = t, clock.now()
        return asyncio.ensure_future(_reconnected(cps, clock, network, timeout_s))
    return None


async def _reconnected(cps: list[ChargePoint], clock: ScaledClock, network: dict[str, float],
                       timeout_s: float) -> None:
    """Record when every charge point is connected again (clock time)."""
    await asyncio.gather(*(cp.uplink.wait_online(timeout_s) for cp in cps))
    network["reconnected"] = clock.now()


def _message_key(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True)


def _delivery(cp: ChargePoint, csms: CSMS, produced: int) -> dict[str, int]:
    """Compare the first ``produced`` transaction messages ``cp`` queued with what the CSMS received."""
    journal = cp.uplink.journal[:produced]
    index = {(q.action, _message_key(q.payload)): k for k, q in enumerate(journal)}
    seen: set[int] = set()
    latest, out_of_order, duplicates = -1, 0, 0
    for frame in csms.session(cp.id).trace.frames:
        if frame.direction != "received" or not frame.is_call or frame.action not in TRANSACTION_ACTIONS:
            continue
        k = index.get((frame.action, _message_key(frame.payload)))
        if k is None:
            continue
        if k in seen:
            duplicates += 1
            continue
        seen.add(k)
        out_of_order += int(k < latest)
        latest = max(latest, k)
    offline = [k for k, q in enumerate(journal) if q.created_offline]
    delivered = sum(1 for k in offline if k in seen)
    return {"produced": len(journal), "queued": len(offline), "delivered": delivered, "lost": len(offline) - delivered,
            "lost_any": len(journal) - len(seen), "out_of_order": out_of_order, "duplicates": duplicates}


def _outage_report(outage: Outage, cps: list[ChargePoint], csms: CSMS, produced: list[int], network: dict[str, float],
                   passes: list[_Pass], t: Array, site_a: Array, limit_a: Array) -> OutageReport:
    restored, restored_clock = network["restored"], network["restored_clock"]
    per = {cp.id: _delivery(cp, csms, count) for cp, count in zip(cps, produced)}
    after = [p for p in passes if p.decided >= network["reconnected"] and p.sent and p.answered == p.sent]
    tw, cur = windows(t, site_a)
    _, lim = windows(t, limit_a)
    above = (cur > band(lim) + 1e-9).any(axis=1) & (tw >= restored - 1e-9)
    last = np.nonzero(above)[0]
    back: float | None = 0.0
    if len(last):
        back = None if last[-1] + 1 >= len(tw) else float(tw[last[-1] + 1] - restored)
    total = {key: sum(d[key] for d in per.values())
             for key in ("queued", "delivered", "lost", "out_of_order", "duplicates")}
    return OutageReport(
        start_s=network["cut"], duration_s=restored - network["cut"],
        reconnect_s=network["reconnected"] - restored_clock,
        reallocated_s=after[0].done - restored_clock if after else None, back_in_band_s=back,
        per_charge_point=per, **total)


def _observe(frame: Frame, c: _Connector, changed: asyncio.Event) -> None:
    """Follow one charge point's transactions and meter values from the CSMS's trace."""
    if frame.direction == "received" and not c.reachable:
        c.reachable = True  # heard from again: allocate now
        changed.set()
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
    plant: Plant, period_s: float, default_a: float, calendar: Calendar, announced: Array, base: Array,
    playback: _Playback, stats: dict[str, int], latencies: list[float], passes: list[_Pass], offline_a: float,
    lease_s: float,
) -> None:
    """The CSMS-side controller: allocate every ``period_s`` and on every transaction change; renew leases."""
    clock = calendar.clock
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
            await asyncio.wait_for(changed.wait(), period_s / clock.scale)
        except asyncio.TimeoutError:
            pass
        changed.clear()
        t = clock.now()
        k = playback.step
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
        target = quantise_profile(np.where(connected, inner.decide(obs).setpoints_a, 0.0))
        # A lapsed lease leaves the charge point on its floor: that is what it enforces now.
        floor = [clock.now() >= c.lease_until for c in known]
        applied = np.array([min(c.applied_a, offline_a) if low else c.applied_a for c, low in zip(known, floor)])
        down, up = plan_changes(applied, target)
        renew = [i for i, c in enumerate(known) if c.lease_until - t < 1.5 * period_s]
        record = _Pass(t, t, 0, 0, 0)
        # Decreases, then increases, then the leases (which lift a floor only onto a TxProfile in force).
        waves = ([(int(i), "tx") for i in down if connected[i]], [(int(i), "tx") for i in up if connected[i]],
                 [(i, "lease") for i in renew])
        for wave in waves:
            issued = calendar.now()
            answers = await asyncio.gather(*(
                csms.session(ids[i]).call("SetChargingProfile", _request(what, known[i], float(target[i]), issued,
                                                                         scenario.evse_max_a, lease_s), CALL_TIMEOUT_S)
                for i, what in wave), return_exceptions=True)
            for (i, what), answer in zip(wave, answers):
                stats["sent"] += 1
                record.sent += 1
                if not isinstance(answer, dict):
                    known[i].reachable = False
                    continue
                record.answered += 1
                if answer.get("status") != "Accepted":
                    continue
                stats["accepted"] += 1
                record.accepted += 1
                latencies.append(clock.now() - t)
                if what == "tx":
                    known[i].applied_a = float(target[i])
                else:
                    known[i].lease_until = t + lease_s
            if record.answered < record.sent:
                break  # an unanswered change: nothing that could add to it until it is known to be in force
        record.done = clock.now()
        passes.append(record)


def _request(what: str, c: _Connector, limit_a: float, issued: datetime, rating_a: float,
             lease_s: float) -> dict[str, Any]:
    """The SetChargingProfile request: a TxProfile of ``limit_a`` or a renewed lease at the rating."""
    if what == "tx":
        return {"connectorId": 1, "csChargingProfiles": tx_profile(1, c.transaction, limit_a)}
    return {"connectorId": 0, "csChargingProfiles": station_max_profile(
        LEASE_PROFILE_ID, 1, rating_a, issued, issued + timedelta(seconds=lease_s))}
