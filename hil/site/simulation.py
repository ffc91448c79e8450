"""The fast in-memory loop: a scenario's EVs, the site feeder and a controller, stepped at 1 s.

Each EV follows its set point after a reaction delay and a first-order lag (IEC 61851-1 expects a
reaction within 5 s), never above its own maximum, until its energy request is met. The site meter sees
the ports plus the unmanaged load (optionally with a gain error from a given time, and stale windows in
which it delivers no new sample, for fault scenarios); the port meters are always true. Limits come from
the breaker/contract and from grid events: a demand-response limit reaches the controller ``notice``
seconds before it applies. Everything the metrics and the compliance check need is recorded.

Units: seconds, A per phase, kWh, V, W.
"""

from __future__ import annotations

import time as wallclock
from dataclasses import dataclass, field

import numpy as np

from hil.controllers.observation import Array, Controller, Observation, frozen
from hil.site.scenarios import Scenario

HOUR = 3600.0


@dataclass(frozen=True)
class SimulationConfig:
    dt: float = 1.0
    """Step [s]."""
    control_period: float = 1.0
    """How often the controller decides [s] (1 s local, 30-60 s cloud)."""
    ev_delay: float = 2.0
    """EV reaction delay to a new set point [s]."""
    ev_lag: float = 1.0
    """EV first-order time constant [s]."""
    ev_start_delay: float = 0.0
    """From plug-in until the EV can draw at all (IEC 61851 state B to C, the CHAdeMO or ISO 15118
    start-up) [s]; the controller may already allocate to it."""
    meter_gain: float = 1.0
    """Site-meter gain error (0.8 = reads 20 % low)."""
    meter_gain_from: float = 0.0
    """When the gain error starts [s] (the meter reads true before)."""
    meter_stale: tuple[tuple[float, float], ...] = ()
    """(start, end) windows [s] in which the site meter delivers no new sample: the controller keeps
    seeing the last reading, its age growing."""
    record_ports_every: float = 60.0
    """Keep per-port currents at this resolution [s] (memory stays small for large sites)."""


@dataclass
class RunResult:
    """What happened. Site traces at every step; per-port traces decimated."""

    scenario: Scenario
    controller: str
    architecture: str
    config: SimulationConfig
    t: Array
    site_a: Array
    """(steps, 3) true site current per phase [A]."""
    limit_a: Array
    """(steps, 3) enforced limit per phase [A]."""
    price: Array
    port_t: Array
    port_a: Array
    """(samples, ports) port current [A per phase]."""
    port_kwh: Array
    """(samples, ports) energy delivered through each port so far [kWh]."""
    session_ids: list[str]
    requested_kwh: Array
    delivered_kwh: Array
    setpoint_changes: Array
    """Per session: set-point changes larger than 0.5 A."""
    session_hours: Array
    step_ms: Array
    """Wall time of each controller call [ms]."""
    fallback_s: float
    event_times: list[tuple[float, str, float | None]] = field(default_factory=list)
    """(time, kind, reduction [A] or None) of headroom-reducing events, for the compliance check."""
    wall_s: float = 0.0
    exported_kwh: float = 0.0
    """V2G: energy the EVs gave back [kWh]."""
    export_requested_kwh: float = 0.0
    """V2G: energy the export requests asked for [kWh]."""


def simulate(scenario: Scenario, controller: Controller, config: SimulationConfig = SimulationConfig()) -> RunResult:
    """Run ``controller`` through ``scenario``."""
    start_wall = wallclock.perf_counter()
    n, dt = scenario.ports, config.dt
    steps = int(np.ceil(scenario.duration / dt))
    sessions = sorted(scenario.sessions, key=lambda s: s.arrival)
    v = scenario.phase_voltage

    # Port state.
    session_at = np.full(n, -1)
    phases = np.zeros((n, 3))
    ev_max = np.zeros(n)
    remaining = np.zeros(n)
    reserve = np.zeros(n)  # V2G: energy a port's EV may give below its arrival charge [kWh]
    arrival = np.zeros(n)
    departure = np.full(n, np.inf)
    ready_at = np.zeros(n)  # when each port's EV can start drawing
    actual = np.zeros(n)
    setpoint = np.zeros(n)
    delay_steps = max(int(round(config.ev_delay / dt)), 0)
    history = np.zeros((delay_steps + 1, n))
    follow = 1.0 - np.exp(-dt / config.ev_lag) if config.ev_lag > 0 else 1.0

    requested = np.array([s.energy_kwh for s in sessions])
    delivered = np.zeros(len(sessions))
    changes = np.zeros(len(sessions))
    hours = np.array([(s.departure - s.arrival) / HOUR for s in sessions])

    t_rec = np.arange(steps) * dt
    base_rec, enforced_rec, announced_rec, unmanaged_rec = limit_trace(scenario, t_rec)
    export_rec = export_trace(scenario, t_rec)
    requested_at = np.zeros(n)  # the request of the session at each port [kWh]
    exported = 0.0
    site_rec = np.zeros((steps, 3))
    price_rec = scenario.tariff.prices(t_rec, scenario.start_h)
    every = max(int(round(config.record_ports_every / dt)), 1)
    port_rec = np.zeros((steps // every + 1, n))
    port_kwh_rec = np.zeros((steps // every + 1, n))
    port_kwh = np.zeros(n)
    session_kwh = np.zeros(n)  # energy delivered in the session at each port so far [kWh]
    step_ms: list[float] = []
    fallback_steps = 0
    next_session = 0
    control_every = max(int(round(config.control_period / dt)), 1)
    fallback = False
    n_phases = np.zeros(n)
    slot = 0  # ring-buffer position of the newest set point in ``history``
    connected = np.zeros(n, dtype=bool)
    energy_per_amp = v * dt / 3.6e6
    site_reading, read_at = np.zeros(3), 0.0  # the site meter's last sample and its time
    # The loop runs 86,400 times a simulated day, so what does not change from step to step is kept: the
    # limit arrays (rebuilt when a limit changes), the ports' load on the phases (recomputed when an EV's
    # current or a port's phases change), the site current (recorded per stretch in which it stays the
    # same), and the V2G and start-delay terms (skipped while no EV can discharge, or without a start
    # delay; they are no-ops then). The EVs' state settles between set-point changes (the lag reaches a
    # fixed point), so the EV model keeps the target (recomputed while a set point is within the EVs'
    # reaction delay, when an EV's maximum, a port's session, a battery becoming full or an EV becoming
    # ready may have changed it, and at every step while an EV may discharge), skips the lag once it left
    # ``actual`` as it was for the same target, and keeps the power that follows from ``actual``. Every
    # skipped computation would have given the same values.
    limits: dict[str, Array] = {}
    limits_at: tuple[float, float] | None = None
    no_floor = frozen(np.zeros(n))
    bidirectional = False  # some connected EV may discharge
    delayed_start = config.ev_start_delay > 0
    load = np.zeros(3)  # phases.T @ actual
    next_departure = np.inf
    last_seen: tuple[bytes, bytes] | None = None  # the last decision and connected ports, as bytes
    # Per step as plain floats and flags (cheaper to read than numpy scalars; the same values).
    base_at, announced_at, unmanaged_at = base_rec.tolist(), announced_rec.tolist(), unmanaged_rec.tolist()
    price_at, export_at = price_rec.tolist(), export_rec.tolist()
    stale_at = np.zeros(steps, dtype=bool)
    for start, end in config.meter_stale:
        stale_at |= (t_rec >= start) & (t_rec < end)
    fresh_at = (~stale_at).tolist()
    target = np.zeros(n)
    target_until = 0  # recompute the target up to this step (a set point is in the EVs' reaction delay)
    moving = True  # the lag may still change ``actual`` for the current target
    power = np.zeros(n)  # actual * n_phases * energy_per_amp [kWh per step]
    power_stale = load_stale = True  # ``actual`` or the ports' phases changed since ``power`` / ``load``
    starting_seen = b""  # the EVs still in their start delay, as bytes
    site_now, site_from = load + unmanaged_at[0] if steps else load, 0  # the site current since step ``site_from``
    next_arrival = sessions[0].arrival if sessions else np.inf

    for k in range(steps):
        t = k * dt
        # Departures, then arrivals.
        if next_departure <= t:
            leaving = departure <= t
            delivered[session_at[leaving]] = session_kwh[leaving]
            session_at[leaving] = -1
            phases[leaving] = 0.0
            n_phases[leaving] = 0.0
            ev_max[leaving] = remaining[leaving] = actual[leaving] = setpoint[leaving] = reserve[leaving] = requested_at[leaving] = 0.0
            history[:, leaving] = 0.0
            departure[leaving] = np.inf
            connected = session_at >= 0
            next_departure = float(departure.min())
            bidirectional = bool(np.count_nonzero(reserve > 0))
            load = phases.T @ actual
            target_until, power_stale, load_stale = max(target_until, k), True, True
        while next_arrival <= t:
            s = sessions[next_session]
            p = s.port
            if session_at[p] >= 0:  # the port's previous session ends here
                delivered[session_at[p]] = session_kwh[p]
            session_at[p] = next_session
            phases[p] = 0.0
            phases[p, list(s.phases)] = 1.0
            n_phases[p] = len(s.phases)
            ev_max[p], remaining[p], arrival[p], departure[p] = s.max_current_a, s.energy_kwh, s.arrival, s.departure
            requested_at[p] = s.energy_kwh
            ready_at[p] = s.arrival + config.ev_start_delay
            reserve[p] = s.v2g_reserve_kwh
            session_kwh[p] = 0.0
            next_session += 1
            next_arrival = sessions[next_session].arrival if next_session < len(sessions) else np.inf
            connected = session_at >= 0
            next_departure = min(next_departure, s.departure)
            bidirectional = bidirectional or s.v2g_reserve_kwh > 0
            load = phases.T @ actual
            target_until, power_stale, load_stale = max(target_until, k), True, True

        unmanaged = unmanaged_at[k]
        if k % control_every == 0:
            if fresh_at[k]:
                gain = config.meter_gain if t >= config.meter_gain_from else 1.0
                site_reading, read_at = load + unmanaged, t
                if gain != 1.0:
                    site_reading = site_reading * gain
            if limits_at != (base_at[k], announced_at[k]):
                limits_at = (base_at[k], announced_at[k])
                limits = {"breaker": frozen(np.full(3, base_at[k])), "dr": frozen(np.full(3, announced_at[k]))}
            obs = Observation(
                time=t, connected=connected, phases=phases, ev_max_a=ev_max, measured_a=actual,
                remaining_kwh=remaining, arrival=arrival, departure=departure, site_a=site_reading.copy(),
                site_age_s=t - read_at, limits=dict(limits), price=price_at[k], phase_voltage=v,
                export_kw=export_at[k],
                v2g_floor_kwh=np.where(reserve > 0, reserve + requested_at - remaining, 0.0) if bidirectional else no_floor,
            )
            t0 = wallclock.perf_counter()
            decision = controller.decide(obs)
            step_ms.append((wallclock.perf_counter() - t0) * 1e3)
            decided = np.asarray(decision.setpoints_a, dtype=float)
            seen = (decided.tobytes(), connected.tobytes())
            if seen != last_seen:  # (the same decision for the same ports leaves the set points as they are)
                last_seen = seen
                new = np.where(connected, decided, 0.0)
                moved = np.abs(new - setpoint) > 0.5
                if np.count_nonzero(moved):
                    idx = session_at[moved]
                    changes[idx[idx >= 0]] += 1
                if new.tobytes() != setpoint.tobytes():
                    target_until = k + delay_steps  # until the EVs see it (the latest change)
                setpoint = new
            fallback = decision.fallback
        fallback_steps += fallback

        # EVs follow the set point from ``ev_delay`` ago, through a first-order lag.
        if delayed_start:
            starting = (ready_at > t).tobytes()
            if starting != starting_seen:
                starting_seen, target_until = starting, max(target_until, k)
        if k <= target_until or bidirectional:
            # (Past ``target_until`` every row of ``history`` holds the set point: writing it is a no-op.)
            slot = (slot + 1) % len(history)
            history[slot] = setpoint
            target = np.minimum(history[(slot + 1) % len(history)], ev_max)
            # Only a bidirectional EV discharges (and never beyond its maximum, nor below its emergency floor).
            target = np.maximum(target, np.where(reserve > 0, -ev_max, 0.0) if bidirectional else 0.0)
            stopped = (remaining <= 0) & (target > 0)
            if delayed_start:
                stopped |= ready_at > t
            target[stopped] = 0.0
            moving = True
        if moving:
            before = actual.tobytes()
            actual += (target - actual) * follow
            moving = actual.tobytes() != before
            power_stale, load_stale = power_stale or moving, load_stale or moving
        if power_stale:
            power, power_stale = actual * n_phases * energy_per_amp, False
        energy = np.minimum(power, remaining)
        if bidirectional:
            floor = reserve + requested_at - remaining  # energy above the emergency floor [kWh]
            energy = np.maximum(energy, -np.maximum(floor, 0.0))
        remaining -= energy
        full = (remaining <= 1e-9) & (actual > 0)
        if np.count_nonzero(full):  # a full battery draws nothing (and stops its target: remaining <= 0)
            actual[full] = 0.0
            target_until, moving, power_stale, load_stale = max(target_until, k + 1), True, True, True
        if bidirectional:
            empty = (floor + energy <= 1e-9) & (actual < 0)
            if np.count_nonzero(empty):  # at the floor it gives nothing
                actual[empty] = 0.0
                moving, power_stale, load_stale = True, True, True
            exported += float(-energy[energy < 0].sum())
        session_kwh += energy
        port_kwh += energy

        if load_stale or unmanaged != unmanaged_at[site_from]:  # (recorded per stretch of equal site current)
            if load_stale:
                load, load_stale = phases.T @ actual, False
            site_rec[site_from:k] = site_now
            site_now, site_from = load + unmanaged, k
        if k % every == 0:
            port_rec[k // every] = actual
            port_kwh_rec[k // every] = port_kwh
    site_rec[site_from:] = site_now
    if steps % every == 0:  # the last per-port row falls on the end of the run: the state then
        port_rec[-1], port_kwh_rec[-1] = actual, port_kwh
    delivered[session_at[connected]] = session_kwh[connected]

    return RunResult(
        scenario=scenario, controller=controller.name, architecture=controller.architecture, config=config,
        t=t_rec, site_a=site_rec, limit_a=np.repeat(enforced_rec[:, None], 3, axis=1), price=price_rec, port_t=np.arange(len(port_rec)) * every * dt,
        port_a=port_rec, port_kwh=port_kwh_rec, session_ids=[s.id for s in sessions], requested_kwh=requested, delivered_kwh=delivered,
        setpoint_changes=changes, session_hours=hours, step_ms=np.asarray(step_ms), fallback_s=fallback_steps * dt,
        event_times=event_times(scenario), wall_s=wallclock.perf_counter() - start_wall,
        exported_kwh=exported, export_requested_kwh=float(export_rec.sum() * dt / 3600.0),
    )


def limit_trace(scenario: Scenario, t: Array) -> tuple[Array, Array, Array, Array]:
    """Per step [A per phase]: the breaker/contract limit, the enforced limit (with demand response), the
    limit announced to the controller, and the unmanaged load.

    Limit steps scale the limit from their start; a demand-response event lowers it for its duration and
    is announced ``notice`` seconds early; an unmanaged-load step adds a fraction of the base limit.
    """
    limit = np.full(len(t), scenario.limit_a)
    for e in scenario.events:
        if e.kind == "limit_step":
            limit[t >= e.start] *= e.fraction
    enforced, announced = limit.copy(), limit.copy()
    unmanaged = np.full(len(t), scenario.unmanaged_a)
    for e in scenario.events:
        if e.kind == "demand_response":
            reduced = limit * (1.0 - e.fraction)
            active = (t >= e.start) & (t < e.start + e.duration)
            enforced[active] = np.minimum(enforced[active], reduced[active])
            told = (t >= e.start - e.notice) & (t < e.start + e.duration)
            announced[told] = np.minimum(announced[told], reduced[told])
        elif e.kind == "unmanaged_step":
            unmanaged[t >= e.start] += e.fraction * scenario.limit_a
    return limit, enforced, announced, unmanaged


def export_trace(scenario: Scenario, t: Array) -> Array:
    """Per step: the V2G export the grid requests [kW] (0 outside every ``v2g_export`` event)."""
    export = np.zeros(len(t))
    for e in scenario.events:
        if e.kind == "v2g_export":
            export[(t >= e.start) & (t < e.start + e.duration)] += e.power_kw
    return export


def event_times(scenario: Scenario) -> list[tuple[float, str, float | None]]:
    """Headroom-reducing events: limit steps, unmanaged-load steps, demand-response starts."""
    out: list[tuple[float, str, float | None]] = []
    for e in scenario.events:
        if e.kind == "limit_step":
            out.append((e.start, e.kind, None))
        elif e.kind == "unmanaged_step":
            out.append((e.start, e.kind, e.fraction * scenario.limit_a))
        elif e.kind == "demand_response":
            out.append((e.start, "dr_notice" if e.notice > 0 else "dr", None))
    return sorted(out)
