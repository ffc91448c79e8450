"""A scenario through an emulated (or real) rig: the same controller code, real transports, the rig's clock.

``run_on_rig(scenario, controller)`` drives a rig whose ports are the scenario's ports (``rig_for`` builds
an emulated one: per port a DC power source over SCPI, alternating the Keysight and EA dialects, an SDM630
meter over Modbus TCP and a CHAdeMO EV on its own CAN channel; a SunSpec meter on the site), on a clock
scaled ``scale`` times. Every ``control_period`` simulated seconds it

1. lets the scenario's EVs arrive and leave through the EV simulators (configure the state of charge,
   plug in, start; stop and unplug at departure, or stop when the driver's energy is delivered);
2. reads every port meter and the site meter over Modbus;
3. builds the same ``Observation`` the in-memory loop builds (limits from the scenario's limit trace,
   the requested energy less what the port meter counted) and calls ``controller.decide``;
4. sends each changed set point to its power source over SCPI as a power limit: ``P = I x V x phases``
   with ``I`` the per-phase set point (the AC-equivalent current the port meter then reads).

The site current the site meter reported at each step is judged by the same compliance check, so the
result is a ``hil.simulation.RunResult`` that ``hil.metrics.measure`` compares with the in-memory run.
Only three-phase sessions (the DC stages spread their power over the three phases).

Units: simulated seconds, A per phase, kWh, W, V.
"""

from __future__ import annotations

import time as wallclock
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from hil.controllers.observation import Array, Controller, Observation
from hil.rig.model import RigSpec
from hil.rig.rig import Rig
from hil.scenarios import Scenario
from hil.simulation import RunResult, SimulationConfig, event_times, limit_trace

SOURCE_PROFILES = ("keysight_rp7900", "ea_psb10000")
"""Alternated across the ports of ``rig_for``: the controller must not care which dialect a port speaks."""
STAGE_VOLTAGE_V = 410.0
"""Voltage set point of every stage: the batteries' maximum; the power limit does the regulating [V]."""
STAGE_CURRENT_A = 125.0
"""Current set point (the soft limit) [A DC]."""
START_SOC_PCT = 20.0


@dataclass
class RigRunResult:
    run: RunResult
    late_steps: int
    """Control steps that started more than one period late (the loop could not keep up with the clock)."""
    step_ms: Array
    """Wall time of each whole control step (meters, decision, set points) [ms]."""
    start_delay_s: Array
    """Per session that was given current: from its first set point until its port meter saw it draw,
    less the one control period any change takes to be seen [simulated s]. The EV's start-up on the rig
    (CHAdeMO handshake over CAN, contactor), for ``SimulationConfig.ev_start_delay``."""


def rig_for(scenario: Scenario, scale: float) -> RigSpec:
    """An emulated rig for ``scenario``: its ports, feeder limit and unmanaged load, on a ``scale`` clock."""
    n, v = scenario.ports, scenario.phase_voltage
    ports = [{"name": f"p{k + 1}", "battery": {"capacity_kwh": 200.0, "soc": START_SOC_PCT, "max_voltage": STAGE_VOLTAGE_V,
                                               "max_current": STAGE_CURRENT_A}} for k in range(n)]
    power = scenario.evse_max_a * v * 3 * 1.05
    sources = [{"name": f"ps{k + 1}", "port": f"p{k + 1}", "profile": SOURCE_PROFILES[k % 2], "emulated": True,
                "limits": {"voltage": 500.0, "current": STAGE_CURRENT_A, "power": power, "ramp": 2000.0}} for k in range(n)]
    meters = [{"name": f"m{k + 1}", "model": "sdm630", "point": f"p{k + 1}", "unit": k + 1, "emulated": True} for k in range(n)]
    meters.append({"name": "site", "model": "sunspec", "point": "site", "unit": n + 10, "emulated": True})
    evs = [{"name": f"ev{k + 1}", "port": f"p{k + 1}", "channel": f"can{k}", "emulated": True} for k in range(n)]
    return RigSpec.model_validate({
        "name": f"{scenario.name}-rig", "description": f"emulated rig for scenario {scenario.name}",
        "clock": {"scale": scale}, "site": {"limit_a": scenario.limit_a, "phase_voltage": v,
                                            "unmanaged_w": [scenario.unmanaged_a * v] * 3},
        "ports": ports, "power_sources": sources, "meters": meters, "ev_simulators": evs,
    })


def run_on_rig(scenario: Scenario, controller: Controller, *, scale: float = 20.0, control_period: float = 1.0,
               spec: RigSpec | None = None) -> RigRunResult:
    """Run ``controller`` through ``scenario`` on ``spec`` (default ``rig_for(scenario, scale)``)."""
    if any(len(s.phases) != 3 for s in scenario.sessions):
        raise ValueError("run_on_rig: the rig's DC ports draw on three phases; the scenario has single-phase sessions")
    spec = spec or rig_for(scenario, scale)
    n, v = scenario.ports, scenario.phase_voltage
    sessions = sorted(scenario.sessions, key=lambda s: s.arrival)
    steps = int(np.ceil(scenario.duration / control_period))
    t_rec = np.arange(steps) * control_period
    base, enforced, announced, unmanaged = limit_trace(scenario, t_rec)
    site_rec = np.zeros((steps, 3))
    requested = np.array([s.energy_kwh for s in sessions])
    delivered = np.zeros(len(sessions))
    changes = np.zeros(len(sessions))
    step_ms: list[float] = []
    decide_ms: list[float] = []
    late = 0

    session_at = np.full(n, -1)
    phases = np.ones((n, 3))  # a DC stage draws on all three phases, connected or not: its meter says so
    ev_max, arrival, departure = np.zeros(n), np.zeros(n), np.full(n, np.inf)
    start_kwh = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    sent = np.full(n, -1.0)  # power limit last sent [W]; -1: output off
    setpoint = np.zeros(n)
    first_set = np.full(n, np.nan)  # when the session at each port first got a set point
    starts: list[float] = []
    with Rig(spec) as rig, ThreadPoolExecutor(max_workers=n + 1, thread_name_prefix="rig-meter") as pool:
        assert rig.plant is not None
        clock = rig.clock
        sources = [rig.power_source(f"ps{k + 1}") for k in range(n)]
        meters = [rig.meter(f"m{k + 1}") for k in range(n)]
        site_meter = rig.meter("site")
        evs = [rig.ev(f"ev{k + 1}") for k in range(n)]
        for k in range(n):
            evs[k].unplug()
            sources[k].set_voltage(STAGE_VOLTAGE_V)
            sources[k].set_current(STAGE_CURRENT_A)
            sources[k].set_power(0.0)
        next_session = 0
        unmanaged_now = scenario.unmanaged_a
        wall0 = wallclock.perf_counter()
        t_start = clock.now()
        for k in range(steps):
            t = k * control_period
            wait = t - (clock.now() - t_start)
            if wait > 0:
                clock.sleep(wait)
            elif wait < -control_period:
                late += 1
            w0 = wallclock.perf_counter()
            if unmanaged[k] != unmanaged_now:  # an unmanaged-load step: the building draws more
                unmanaged_now = unmanaged[k]
                with rig.plant.lock:
                    rig.plant.site.unmanaged_w = (unmanaged_now * v,) * 3
            # Every meter at once, so that the port and site readings describe (nearly) the same moment.
            *readings, site = pool.map(lambda meter: meter.read(), [*meters, site_meter])
            port_kwh = np.array([r.import_kwh for r in readings])
            # Departures (energy read first), then arrivals, then EVs whose driver's energy is delivered.
            for p in np.nonzero((session_at >= 0) & (departure <= t))[0]:
                delivered[session_at[p]] = port_kwh[p] - start_kwh[p]
                sources[p].set_power(0.0)
                evs[p].unplug()
                sources[p].output(False)
                session_at[p], sent[p], setpoint[p], done[p], first_set[p] = -1, -1.0, 0.0, False, np.nan
                ev_max[p], departure[p] = 0.0, np.inf
            while next_session < len(sessions) and sessions[next_session].arrival <= t:
                s = sessions[next_session]
                p = s.port
                evs[p].configure(soc=START_SOC_PCT)
                evs[p].plug_in()
                evs[p].start()
                sources[p].set_power(0.0)
                sources[p].output(True)
                session_at[p], sent[p], done[p], start_kwh[p] = next_session, 0.0, False, port_kwh[p]
                ev_max[p], arrival[p], departure[p] = s.max_current_a, s.arrival, s.departure
                next_session += 1
            connected = session_at >= 0
            so_far = np.where(connected, port_kwh - start_kwh, 0.0)
            remaining = np.where(connected, np.maximum(requested[np.maximum(session_at, 0)] - so_far, 0.0), 0.0)
            for p in np.nonzero(connected & ~done & (remaining <= 0.0))[0]:
                evs[p].stop()  # the EV has what its driver asked for: it stops drawing
                done[p] = True
            measured = np.array([max(r.current) for r in readings])
            for p in np.nonzero(connected & np.isfinite(first_set) & (measured > 1.0))[0]:
                starts.append(t - first_set[p] - control_period)
                first_set[p] = np.inf  # measured once per session
            site_rec[k] = site.current
            obs = Observation(
                time=t, connected=connected, phases=phases.copy(), ev_max_a=ev_max.copy(), measured_a=measured,
                remaining_kwh=remaining, arrival=arrival.copy(), departure=departure.copy(),
                site_a=np.asarray(site.current, dtype=float), site_age_s=0.0,
                limits={"breaker": np.full(3, base[k]), "dr": np.full(3, announced[k])},
                price=scenario.tariff.price(t, scenario.start_h), phase_voltage=v,
            )
            d0 = wallclock.perf_counter()
            decision = controller.decide(obs)
            decide_ms.append((wallclock.perf_counter() - d0) * 1e3)
            new = np.where(connected, np.minimum(np.asarray(decision.setpoints_a, dtype=float), ev_max), 0.0)
            moved = np.abs(new - setpoint) > 0.5
            changes[session_at[moved & connected]] += 1
            setpoint = new
            first_set[connected & np.isnan(first_set) & (new > 0)] = t
            for p in np.nonzero(connected)[0]:
                watts = 0.0 if done[p] else round(float(setpoint[p]) * v * 3, 0)
                if watts != sent[p]:
                    sources[p].set_power(watts)
                    sent[p] = watts
            step_ms.append((wallclock.perf_counter() - w0) * 1e3)
        readings = [m.read() for m in meters]
        for p in np.nonzero(session_at >= 0)[0]:
            delivered[session_at[p]] = readings[p].import_kwh - start_kwh[p]
        wall = wallclock.perf_counter() - wall0

    run = RunResult(
        scenario=scenario, controller=f"{controller.name} on rig", architecture=controller.architecture,
        config=SimulationConfig(dt=control_period, control_period=control_period), t=t_rec, site_a=site_rec,
        limit_a=np.repeat(enforced[:, None], 3, axis=1), price=scenario.tariff.prices(t_rec, scenario.start_h),
        port_t=np.zeros(0), port_a=np.zeros((0, n)), port_kwh=np.zeros((0, n)), session_ids=[s.id for s in sessions],
        requested_kwh=requested, delivered_kwh=np.minimum(delivered, requested), setpoint_changes=changes,
        session_hours=np.array([(s.departure - s.arrival) / 3600.0 for s in sessions]), step_ms=np.asarray(decide_ms),
        fallback_s=0.0, event_times=event_times(scenario), wall_s=wall,
    )
    return RigRunResult(run, late, np.asarray(step_ms), np.asarray(starts))
