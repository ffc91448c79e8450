"""A scenario through an emulated (or real) rig: the same controller code, real transports, the rig's clock.

``run_on_rig(scenario, controller)`` drives a rig whose ports are the scenario's ports (``rig_for`` builds
an emulated one: per port a DC power source over SCPI, alternating the Keysight and EA dialects, an SDM630
meter over Modbus TCP and a CHAdeMO EV on its own CAN channel; a SunSpec meter on the site for the
controller and a second one, the reference meter, for the monitor), on a clock scaled ``scale`` times.
Every ``control_period`` simulated seconds ``RigSite.step``

1. applies the actions due (fault injection, a controller restart, ...) and the scenario's grid events
   (limit steps and demand response change the limit the controller is told; an unmanaged-load step makes
   the building draw more);
2. lets the scenario's EVs arrive and leave through the EV simulators (configure the state of charge,
   plug in, start; stop and unplug at departure, or stop when the driver's energy is delivered);
3. takes the latest reading of every port meter and of the site meter (each meter is read in its own
   thread, so a meter that hangs makes its reading old instead of stopping the loop: the controller sees
   the age and its shell falls back after 3 s);
4. plays the charger's part: switches a port's output off when its EV has been silent on CAN for longer
   than the CHAdeMO timeout, and clears and restarts a power source whose protection tripped once its
   port has been dark for ``retry_s``;
5. builds the same ``Observation`` the in-memory loop builds (limits from the scenario's limit trace, the
   phases each EV draws as its port meter shows them, or as declared while it draws nothing, the
   requested energy less what the port meter counted) and calls ``controller.decide``;
6. sends each changed set point to its power source over SCPI as a power limit: ``P = I x V x phases``
   with ``I`` the per-phase set point and ``phases`` those the port's EV really draws (a pilot current on
   an AC port): the AC-equivalent current the port meter then reads. Writes run in the background too,
   newest value first, so a slow or lossy bus to the chargers delays set points without stalling the loop.

With ``monitor_hz`` set, a ``hil.compliance.monitor.Monitor`` samples the reference meter at that rate into the
series the load-limit suites judge; every event (arrivals, limit changes, demand response, actions) goes
to its log. The result carries a ``hil.site.simulation.RunResult`` built from the controller's own site
readings, so ``hil.site.metrics.measure`` compares it with the in-memory run.

Units: simulated seconds, A per phase, kWh, W, V.
"""

from __future__ import annotations

import time as wallclock
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hil.controllers.observation import Array, Controller, Observation
from hil.instruments.chademo import SILENCE_TIMEOUT_S
from hil.instruments.energy_meter import EnergyMeter, MeterValues
from hil.instruments.errors import InstrumentError
from hil.instruments.power_source import PowerSource
from hil.compliance.monitor import LoggedEvent, Monitor
from hil.rig.model import RigSpec
from hil.rig.rig import Rig
from hil.site.scenarios import GridEvent, Scenario
from hil.site.simulation import RunResult, SimulationConfig, event_times, limit_trace

SOURCE_PROFILES = ("keysight_rp7900", "ea_psb10000")
"""Alternated across the ports of ``rig_for``: the controller must not care which dialect a port speaks."""
STAGE_VOLTAGE_V = 410.0
"""Voltage set point of every stage: the batteries' maximum; the power limit does the regulating [V]."""
STAGE_CURRENT_A = 125.0
"""Current set point (the soft limit) [A DC]."""
START_SOC_PCT = 20.0
KEEPALIVE_S = 5.0
"""An unchanged set point is sent again this often [simulated s]."""
SOURCE_TIMEOUT_S = 5.0
"""How long the site waits for a power source's reply [simulated s] (a lost command costs that much)."""
SITE_METER = "site"
REFERENCE_METER = "ref"
"""The meter ``rig_for`` adds for the monitor: the lab's reference, independent of the controller's."""
DRAWING_A = 2.0
"""A port draws when its meter shows more than this on a phase [A]: its phases are then those above
``PHASE_SHARE`` of its largest."""
PHASE_SHARE = 0.3


@dataclass(frozen=True)
class Action:
    """Something done to the site at ``time`` [s of the run]: ``apply(site)`` runs in the control loop."""

    time: float
    kind: str
    detail: str
    apply: Callable[[RigSite], None]
    headroom: bool = False
    """True when it takes headroom (the compliance check then allows the settling time)."""
    reduction_a: float | None = None


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
    setpoint_a: Array = field(default_factory=lambda: np.zeros((0, 0)))
    """(steps, ports) the controller's set point at each step [A per phase]."""
    events: list[LoggedEvent] = field(default_factory=list)
    monitor: Monitor | None = None
    fallback_flags: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """(steps,) whether the controller said it ran its safe allocation at each step."""
    write_errors: int = 0
    """Set points a power source did not take (the loop sent them again)."""
    read_errors: int = 0
    """Meter readings that failed (the loop kept the last one, its age growing)."""


def rig_for(scenario: Scenario, scale: float) -> RigSpec:
    """An emulated rig for ``scenario``: its ports (each with the phases of its sessions), feeder limit and
    unmanaged load, the controller's site meter and the monitor's reference meter, on a ``scale`` clock."""
    n, v = scenario.ports, scenario.phase_voltage
    phases: list[list[int]] = [[1, 2, 3] for _ in range(n)]
    for s in scenario.sessions:
        phases[s.port] = sorted(p + 1 for p in s.phases)
    for s in scenario.sessions:
        if sorted(p + 1 for p in s.phases) != phases[s.port]:
            raise ValueError(f"rig_for: port {s.port} has sessions on different phases; a rig port has one wiring")
    ports = [{"name": f"p{k + 1}", "phases": phases[k],
              "battery": {"capacity_kwh": 200.0, "soc": START_SOC_PCT, "max_voltage": STAGE_VOLTAGE_V,
                          "max_current": STAGE_CURRENT_A}} for k in range(n)]
    power = scenario.evse_max_a * v * 3 * 1.05
    sources = [{"name": f"ps{k + 1}", "port": f"p{k + 1}", "profile": SOURCE_PROFILES[k % 2], "emulated": True,
                "limits": {"voltage": 500.0, "current": STAGE_CURRENT_A, "power": power, "ramp": 2000.0},
                "timeout_ms": max(int(SOURCE_TIMEOUT_S * 1000 / scale), 200)} for k in range(n)]
    meters = [{"name": f"m{k + 1}", "model": "sdm630", "point": f"p{k + 1}", "unit": k + 1, "emulated": True} for k in range(n)]
    meters.append({"name": SITE_METER, "model": "sunspec", "point": "site", "unit": n + 10, "emulated": True})
    meters.append({"name": REFERENCE_METER, "model": "sunspec", "point": "site", "unit": n + 11, "emulated": True})
    evs = [{"name": f"ev{k + 1}", "port": f"p{k + 1}", "channel": f"can{k}", "emulated": True} for k in range(n)]
    return RigSpec.model_validate({
        "name": f"{scenario.name}-rig", "description": f"emulated rig for scenario {scenario.name}",
        "clock": {"scale": scale}, "site": {"limit_a": scenario.limit_a, "phase_voltage": v,
                                            "unmanaged_w": [scenario.unmanaged_a * v] * 3},
        "ports": ports, "power_sources": sources, "meters": meters, "ev_simulators": evs,
    })


class _Reading:
    """The latest reading of one meter, fetched in the background; ``age`` grows while it hangs or fails
    and while its values stop changing (a frozen meter)."""

    def __init__(self, meter: EnergyMeter, pool: ThreadPoolExecutor) -> None:
        self.meter = meter
        self.pool = pool
        self.value: MeterValues | None = None
        self.changed_at = -np.inf
        self.errors = 0
        self._future: Future[MeterValues] | None = None

    def request(self) -> Future[MeterValues] | None:
        if self._future is None:
            self._future = self.pool.submit(self.meter.read)
        return self._future

    def collect(self, t: float) -> None:
        f = self._future
        if f is None or not f.done():
            return
        self._future = None
        try:
            value = f.result()
        except InstrumentError:
            self.errors += 1
            return
        if self.value is None or value.current != self.value.current or value.import_kwh != self.value.import_kwh:
            self.changed_at = t
        self.value = value

    def age(self, t: float) -> float:
        return t - self.changed_at


class _Setpoint:
    """Power limits to one source, written in the background: the newest value waits while one is on the
    wire; a write the source did not take is sent again, and an unchanged one is repeated every
    ``KEEPALIVE_S`` (what a charger's set-point watchdog expects)."""

    def __init__(self, source: PowerSource, pool: ThreadPoolExecutor) -> None:
        self.source = source
        self.pool = pool
        self.sent: float | None = None
        """The value last handed to the source [W]; ``None`` forces the next write."""
        self.sent_at = -np.inf
        self.errors = 0
        self._future: Future[None] | None = None
        self._pending: float | None = None

    def write(self, watts: float, now: float) -> None:
        """Hand ``watts`` [W] to the source at ``now`` [s] unless it already has it (and recently)."""
        if watts == self.sent and self._pending is None and now - self.sent_at < KEEPALIVE_S:
            return
        self.sent, self.sent_at = watts, now
        if self._future is None or self._future.done():
            self._finish()
            self._future = self.pool.submit(self.source.set_power, watts)
        else:
            self._pending = watts

    def poll(self) -> None:
        if self._future is not None and self._future.done():
            self._finish()
            if self._pending is not None:
                value, self._pending = self._pending, None
                self._future = self.pool.submit(self.source.set_power, value)

    def _finish(self) -> None:
        f, self._future = self._future, None
        if f is not None and f.exception() is not None:
            self.errors += 1
            self.sent = None  # send again at the next step


class RigSite:
    """One run of a controller on a started rig. Actions reach the site through its methods."""

    def __init__(self, rig: Rig, scenario: Scenario, controller: Controller, *, control_period: float = 1.0,
                 monitor: Monitor | None = None, pool: ThreadPoolExecutor, retry_s: float = 10.0,
                 rebuild: Callable[[], Controller] | None = None) -> None:
        n = scenario.ports
        self.rig, self.scenario, self.controller = rig, scenario, controller
        self.clock = rig.clock
        self.control_period = control_period
        self.monitor = monitor
        self.retry_s = retry_s
        self.sources = [rig.power_source(f"ps{k + 1}") for k in range(n)]
        self.evs = [rig.ev(f"ev{k + 1}") for k in range(n)]
        self.port_meters = [_Reading(rig.meter(f"m{k + 1}"), pool) for k in range(n)]
        self.site_meter = _Reading(rig.meter(SITE_METER), pool)
        self.setpoints = [_Setpoint(s, pool) for s in self.sources]
        wiring = {p.name: p.phases for p in rig.spec.ports}
        self.wired = np.array([[1.0 if k + 1 in wiring[f"p{p + 1}"] else 0.0 for k in range(3)] for p in range(n)])
        """(ports, 3): the phases each port's EV really draws from (the rig's wiring)."""
        self.declared = self.wired.copy()
        """(ports, 3): the phases each EV declares (``declare_phases`` changes it)."""
        self.events: list[LoggedEvent] = []
        self.rebuild = rebuild
        self.fallback = False
        """Whether the controller's last decision was its safe allocation."""
        self.down_until = -np.inf
        self._restarting = False
        self.dark_since = np.full(n, np.nan)
        """Per port: since when a port that should draw has drawn nothing (a tripped source) [s]."""
        self.stopped = np.zeros(n, dtype=bool)
        """Ports whose output the charger switched off because the EV fell silent."""
        self.heard = np.zeros(n, dtype=bool)
        """Ports whose EV has been heard on CAN since it arrived."""
        self.now = 0.0

    # -- what actions use ---------------------------------------------------------------------------
    def log(self, kind: str, detail: str = "", *, headroom: bool = False, reduction_a: float | None = None,
            settling_s: float | None = None) -> None:
        if self.monitor is not None:
            event = self.monitor.log(kind, detail, headroom=headroom, reduction_a=reduction_a, settling_s=settling_s,
                                     at=self.now)
        else:
            event = LoggedEvent(self.now, kind, detail, headroom, reduction_a, settling_s)
        self.events.append(event)

    def restart_controller(self, downtime_s: float) -> None:
        """The controller process dies now and comes back ``downtime_s`` later as a new instance with none of
        its old state (``run_on_rig(rebuild=...)`` builds it); meanwhile the power sources hold the last set
        points."""
        if self.rebuild is None:
            raise ValueError("restart_controller: the run was started without rebuild= (how to build a new controller)")
        self.down_until = self.now + downtime_s
        self._restarting = True

    def declare_phases(self, port: int, phases: Sequence[int]) -> None:
        """From now on the EV at ``port`` declares ``phases`` (0-based), whatever it draws."""
        self.declared[port] = [1.0 if k in phases else 0.0 for k in range(3)]

    # -- the loop -----------------------------------------------------------------------------------
    def phases_now(self, connected: np.ndarray) -> Array:
        """The phases each port's EV draws, as its meter shows them; as declared while it draws nothing."""
        phases = np.where(connected[:, None], self.declared, 0.0)
        for p in np.nonzero(connected)[0]:
            reading = self.port_meters[p].value
            if reading is None:
                continue
            current = np.abs(np.asarray(reading.current, dtype=float))
            if current.max() > DRAWING_A:
                phases[p] = (current > PHASE_SHARE * current.max()).astype(float)
        return phases

    def charger_checks(self, t: float, connected: np.ndarray, setpoint: Array, measured: Array) -> None:
        """The charger's own safety: stop on EV silence; clear and restart a tripped source."""
        for p in np.nonzero(connected & ~self.stopped)[0]:
            silence = self.evs[p].ev_silence_s()
            if silence <= SILENCE_TIMEOUT_S:
                self.heard[p] = True  # the EV talks: from now on its silence stops the charge
            elif self.heard[p]:
                self.sources[p].output(False)
                self.stopped[p] = True
                self.log("charger_stop", f"port {p + 1}: EV silent on CAN for {silence:.2f} s wall; output off")
        for p in np.nonzero(connected & ~self.stopped)[0]:
            if setpoint[p] < 6.0 or measured[p] > DRAWING_A:
                self.dark_since[p] = np.nan
                continue
            if np.isnan(self.dark_since[p]):
                self.dark_since[p] = t
            elif t - self.dark_since[p] >= self.retry_s:
                source = self.sources[p]
                try:
                    causes = source.protection_status()
                    if causes:
                        self.log("protection_seen", f"port {p + 1}: {', '.join(sorted(causes))} latched; clearing")
                        source.clear_protection()
                        source.output(True)
                        self.evs[p].start()  # the EV stopped when the output died: start the charge again
                        self.log("protection_cleared", f"port {p + 1}: output back on, charge restarted")
                except InstrumentError as exc:
                    self.log("source_error", f"port {p + 1}: {exc}")
                self.dark_since[p] = t

    def decide(self, obs: Observation) -> Array | None:
        """The controller's set points, or ``None`` while it is down (restarting)."""
        if obs.time < self.down_until:
            return None
        if self._restarting and self.rebuild is not None:
            self.controller, self._restarting = self.rebuild(), False
            self.log("controller_back", f"{self.controller.name} restarted with no state")
        decision = self.controller.decide(obs)
        self.fallback = decision.fallback
        return np.asarray(decision.setpoints_a, dtype=float)


def run_on_rig(scenario: Scenario, controller: Controller, *, scale: float = 20.0, control_period: float = 1.0,
               spec: RigSpec | None = None, rig: Rig | None = None, actions: Sequence[Action] = (),
               monitor_hz: float | None = None, trace: Path | None = None,
               rebuild: Callable[[], Controller] | None = None) -> RigRunResult:
    """Run ``controller`` through ``scenario`` on ``rig`` (a started rig: a bench), or on ``spec`` (default
    ``rig_for(scenario, scale)``) started for this run. ``actions`` are applied at their times;
    ``monitor_hz`` samples the reference meter (``ref``, else the site meter) for the compliance check,
    its samples and events appended to ``trace`` (CSV) as they come; ``rebuild`` makes a fresh controller
    for ``RigSite.restart_controller``."""
    if rig is not None:
        return _run(rig, scenario, controller, control_period, actions, monitor_hz, trace, rebuild)
    with Rig(spec or rig_for(scenario, scale)) as own:
        return _run(own, scenario, controller, control_period, actions, monitor_hz, trace, rebuild)


def _run(rig: Rig, scenario: Scenario, controller: Controller, control_period: float, actions: Sequence[Action],
         monitor_hz: float | None, trace: Path | None, rebuild: Callable[[], Controller] | None) -> RigRunResult:
    n, v = scenario.ports, scenario.phase_voltage
    sessions = sorted(scenario.sessions, key=lambda s: s.arrival)
    steps = int(np.ceil(scenario.duration / control_period))
    t_rec = np.arange(steps) * control_period
    base, enforced, announced, unmanaged = limit_trace(scenario, t_rec)
    site_rec = np.zeros((steps, 3))
    port_rec = np.zeros((steps, n))
    kwh_rec = np.zeros((steps, n))
    set_rec = np.zeros((steps, n))
    requested = np.array([s.energy_kwh for s in sessions])
    delivered = np.zeros(len(sessions))
    changes = np.zeros(len(sessions))
    step_ms: list[float] = []
    decide_ms: list[float] = []
    late = 0
    fallback_rec = np.zeros(steps, dtype=bool)
    pending = sorted(actions, key=lambda a: a.time)
    meter_names = {m.name for m in rig.spec.meters}
    monitor = None
    if monitor_hz is not None:
        reference = REFERENCE_METER if REFERENCE_METER in meter_names else SITE_METER
        monitor = Monitor(rig.meter(reference), rig.clock, float(enforced[0]), rate_hz=monitor_hz, trace=trace)

    session_at = np.full(n, -1)
    ev_max, arrival, departure = np.zeros(n), np.zeros(n), np.full(n, np.inf)
    start_kwh = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    setpoint = np.zeros(n)
    first_set = np.full(n, np.nan)  # when the session at each port first got a set point
    starts: list[float] = []
    with ThreadPoolExecutor(max_workers=3 * n + 4, thread_name_prefix="rig-site") as pool:
        site = RigSite(rig, scenario, controller, control_period=control_period, monitor=monitor, pool=pool,
                       rebuild=rebuild)
        clock = rig.clock
        for k in range(n):
            site.evs[k].unplug()
            site.sources[k].set_voltage(STAGE_VOLTAGE_V)
            site.sources[k].set_current(STAGE_CURRENT_A)
            site.sources[k].set_power(0.0)
            site.setpoints[k].sent = 0.0
        readers = [*site.port_meters, site.site_meter]
        wait([f for f in (r.request() for r in readers) if f is not None], timeout=5.0)
        next_session = 0
        unmanaged_now = scenario.unmanaged_a
        limit_now = float(enforced[0])
        notices = sorted((e.start - e.notice, f"demand response at {e.start:g} s: limit -{e.fraction:.0%}")
                         for e in scenario.events if e.kind == "demand_response" and e.notice > 0)
        if monitor is not None:
            monitor.start()
        wall0 = wallclock.perf_counter()
        t_start = clock.now()
        try:
            for k in range(steps):
                t = k * control_period
                wait_s = t - (clock.now() - t_start)
                if wait_s > 0:
                    clock.sleep(wait_s)
                elif wait_s < -control_period:
                    late += 1
                w0 = wallclock.perf_counter()
                site.now = t
                while pending and pending[0].time <= t:
                    action = pending.pop(0)
                    site.log(action.kind, action.detail, headroom=action.headroom, reduction_a=action.reduction_a)
                    action.apply(site)
                # The grid: the limit the site must keep, and the building's own load.
                while notices and notices[0][0] <= t:
                    site.log("dr_notice", notices.pop(0)[1])
                if enforced[k] != limit_now:
                    drop = bool(enforced[k] < limit_now)
                    dr = _demand_response_at(scenario, t, control_period) if drop else None
                    kind = ("dr_start" if dr else "limit_step") if drop else "limit_up"
                    limit_now = float(enforced[k])
                    settling = 0.0 if dr is not None and dr.notice > 0 else None
                    if monitor is not None:
                        monitor.set_limit(limit_now, kind, settling_s=settling)
                    site.events.append(LoggedEvent(t, kind, f"limit {limit_now:g} A", drop, None, settling))
                if unmanaged[k] != unmanaged_now:  # an unmanaged-load step: the building draws more
                    site.log("unmanaged_step", f"building load {unmanaged[k]:g} A", headroom=bool(unmanaged[k] > unmanaged_now),
                             reduction_a=float(unmanaged[k] - unmanaged_now))
                    unmanaged_now = float(unmanaged[k])
                    if rig.plant is not None:
                        with rig.plant.lock:
                            rig.plant.site.unmanaged_w = (unmanaged_now * v,) * 3
                # The newest reading of every meter: wait a little for this step's, never for a hung one.
                for r in readers:
                    r.collect(t)
                fresh = [f for f in (r.request() for r in readers) if f is not None]
                wait(fresh, timeout=0.3 * control_period / clock.scale)
                for r in readers:
                    r.collect(t)
                port_kwh = np.array([r.value.import_kwh if r.value else 0.0 for r in site.port_meters])
                # Departures (energy read first), then arrivals, then EVs whose driver's energy is delivered.
                for p in np.nonzero((session_at >= 0) & (departure <= t))[0]:
                    delivered[session_at[p]] = port_kwh[p] - start_kwh[p]
                    site.setpoints[p].write(0.0, t)
                    site.evs[p].unplug()
                    site.sources[p].output(False)
                    site.log("departure", f"port {p + 1}: {sessions[session_at[p]].id}")
                    session_at[p], setpoint[p], done[p], first_set[p] = -1, 0.0, False, np.nan
                    ev_max[p], departure[p], site.stopped[p], site.heard[p] = 0.0, np.inf, False, False
                while next_session < len(sessions) and sessions[next_session].arrival <= t:
                    s = sessions[next_session]
                    p = s.port
                    site.evs[p].configure(soc=START_SOC_PCT)
                    site.evs[p].plug_in()
                    site.evs[p].start()
                    site.sources[p].set_power(0.0)
                    site.setpoints[p].sent = 0.0
                    site.sources[p].output(True)
                    session_at[p], done[p], start_kwh[p] = next_session, False, port_kwh[p]
                    ev_max[p], arrival[p], departure[p] = s.max_current_a, s.arrival, s.departure
                    site.log("arrival", f"port {p + 1}: {s.id}, {s.energy_kwh:g} kWh, up to {s.max_current_a:g} A",
                             headroom=True)
                    next_session += 1
                connected = session_at >= 0
                so_far = np.where(connected, port_kwh - start_kwh, 0.0)
                remaining = np.where(connected, np.maximum(requested[np.maximum(session_at, 0)] - so_far, 0.0), 0.0)
                for p in np.nonzero(connected & ~done & (remaining <= 0.0))[0]:
                    site.evs[p].stop()  # the EV has what its driver asked for: it stops drawing
                    done[p] = True
                measured = np.array([max(r.value.current) if r.value else 0.0 for r in site.port_meters])
                site.charger_checks(t, connected & ~done, setpoint, measured)
                for p in np.nonzero(connected & np.isfinite(first_set) & (measured > 1.0))[0]:
                    starts.append(t - first_set[p] - control_period)
                    first_set[p] = np.inf  # measured once per session
                reading = site.site_meter.value
                site_a = np.asarray(reading.current if reading else (0.0, 0.0, 0.0), dtype=float)
                site_rec[k] = site_a
                phases = site.phases_now(connected)
                obs = Observation(
                    time=t, connected=connected, phases=phases, ev_max_a=ev_max.copy(), measured_a=measured,
                    remaining_kwh=remaining, arrival=arrival.copy(), departure=departure.copy(),
                    site_a=site_a, site_age_s=float(site.site_meter.age(t)),
                    limits={"breaker": np.full(3, base[k]), "dr": np.full(3, announced[k])},
                    price=scenario.tariff.price(t, scenario.start_h), phase_voltage=v,
                )
                d0 = wallclock.perf_counter()
                decision = site.decide(obs)
                if decision is not None:
                    decide_ms.append((wallclock.perf_counter() - d0) * 1e3)
                    new = np.where(connected, np.minimum(decision, ev_max), 0.0)
                    moved = np.abs(new - setpoint) > 0.5
                    changes[session_at[moved & connected]] += 1
                    setpoint = new
                    first_set[connected & np.isnan(first_set) & (new > 0)] = t
                fallback_rec[k] = site.fallback
                for p in np.nonzero(connected & ~site.stopped)[0]:
                    watts = 0.0 if done[p] else round(float(setpoint[p]) * v * float(site.wired[p].sum()), 0)
                    site.setpoints[p].write(watts, t)
                for w in site.setpoints:
                    w.poll()
                port_rec[k], kwh_rec[k], set_rec[k] = measured, port_kwh, setpoint
                step_ms.append((wallclock.perf_counter() - w0) * 1e3)
        finally:
            if monitor is not None:
                monitor.stop()
            for source in site.sources:  # on every way out, a bench's rig included: outputs off, verified
                source.safe_state()
        readings = [m.meter.read() for m in site.port_meters]
        for p in np.nonzero(session_at >= 0)[0]:
            delivered[session_at[p]] = readings[p].import_kwh - start_kwh[p]
        wall = wallclock.perf_counter() - wall0

    run = RunResult(
        scenario=scenario, controller=f"{controller.name} on rig", architecture=controller.architecture,
        config=SimulationConfig(dt=control_period, control_period=control_period), t=t_rec, site_a=site_rec,
        limit_a=np.repeat(enforced[:, None], 3, axis=1), price=scenario.tariff.prices(t_rec, scenario.start_h),
        port_t=t_rec, port_a=port_rec, port_kwh=kwh_rec - kwh_rec[:1], session_ids=[s.id for s in sessions],
        requested_kwh=requested, delivered_kwh=np.minimum(delivered, requested), setpoint_changes=changes,
        session_hours=np.array([(s.departure - s.arrival) / 3600.0 for s in sessions]), step_ms=np.asarray(decide_ms),
        fallback_s=float(fallback_rec.sum()) * control_period, event_times=event_times(scenario), wall_s=wall,
    )
    return RigRunResult(
        run, late, np.asarray(step_ms), np.asarray(starts), setpoint_a=set_rec, events=site.events, monitor=monitor,
        fallback_flags=fallback_rec, write_errors=sum(w.errors for w in site.setpoints),
        read_errors=sum(r.errors for r in readers),
    )


def _demand_response_at(scenario: Scenario, t: float, period: float) -> GridEvent | None:
    """The demand-response event that starts at ``t`` (a limit drop then settles in 0 s if it was announced)."""
    return next((e for e in scenario.events if e.kind == "demand_response" and e.start <= t < e.start + period), None)


__all__ = ["Action", "RigRunResult", "RigSite", "rig_for", "run_on_rig"]
