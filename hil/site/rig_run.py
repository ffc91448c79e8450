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
from hil.rig.model import RigSpec, SiteMeterSpec
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
    safe_pause: bool = False
    """A fault that lets a legal controller pause every session (its site meter gone or wrong, its bus to the
    chargers lossy): the service rule is not judged from it until the recovery time after a ``fault_cleared``
    action (``hil.compliance.sessions``)."""


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
    wanting: Array = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))
    """(steps, ports) whether a session is connected at the port and still wants energy."""
    port_phases: Array = field(default_factory=lambda: np.zeros((0, 3)))
    """(ports, 3) the phases each port draws from (its wiring), as 0/1."""
    events: list[LoggedEvent] = field(default_factory=list)
    monitor: Monitor | None = None
    fallback_flags: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """(steps,) whether the controller said it ran its safe allocation at each step."""
    write_errors: int = 0
    """Set points a power source did not take (the loop sent them again)."""
    read_errors: int = 0
    """Meter readings that failed (the loop kept the last one, its age growing)."""
    clock_scale: float = 1.0
    """Simulated seconds per real second of the rig's clock during the run."""


def rig_for(scenario: Scenario, scale: float, site_meter: SiteMeterSpec | None = None) -> RigSpec:
    """An emulated rig for ``scenario``: its ports (each with the phases of its sessions), feeder limit and
    unmanaged load, the controller's site meter and the monitor's reference meter, on a ``scale`` clock.
    ``site_meter``: serve the controller's site meter as that model at that port and unit (a product under
    test reads it where it was commissioned to); the other meters share its server on other units."""
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
    site: dict[str, object] = {"model": "sunspec", "unit": n + 10}
    if site_meter is not None:
        site = {"model": site_meter.model, "unit": site_meter.unit, "tcp_port": site_meter.tcp_port}
    units = [u for u in range(1, n + 12) if u != site["unit"]]
    meters = [{"name": f"m{k + 1}", "model": "sdm630", "point": f"p{k + 1}", "unit": units[k], "emulated": True} for k in range(n)]
    meters.append({"name": SITE_METER, "point": "site", "emulated": True, **site})
    meters.append({"name": REFERENCE_METER, "model": "sunspec", "point": "site", "unit": units[n], "emulated": True})
    evs = [{"name": f"ev{k + 1}", "port": f"p{k + 1}", "channel": f"can{k}", "emulated": True} for k in range(n)]
    return RigSpec.model_validate({
        "name": f"{scenario.name}-rig", "description": f"emulated rig for scenario {scenario.name}",
        "clock": {"scale": scale}, "site": {"limit_a": scenario.limit_a, "phase_voltage": v,
                                            "unmanaged_w": [scenario.unmanaged_a * v] * 3},
        "ports": ports, "power_sources": sources, "meters": meters, "ev_simulators": evs,
    })


@dataclass(frozen=True)
class PortInstruments:
    """One port of a rig and the instruments the rig file wires to it (their ``port:`` or ``point:``)."""

    port: str
    phases: tuple[int, ...]
    """The phases the port is wired to (1-based)."""
    source: str
    meter: str
    ev: str


def port_instruments(spec: RigSpec, count: int) -> list[PortInstruments]:
    """The first ``count`` ports of the rig file, in its order (the scenario's port k is the k-th), each with
    its power source, port meter and EV simulator; ``ValueError`` names the rig's shortfall."""
    if len(spec.ports) < count:
        raise ValueError(f"rig {spec.name!r} has {len(spec.ports)} port(s); the condition needs {count}")
    found = []
    for port in spec.ports[:count]:
        wired = {
            "power source": [s.name for s in spec.power_sources if s.port == port.name],
            "meter": [m.name for m in spec.meters if m.point == port.name],
            "EV simulator": [e.name for e in spec.ev_simulators if e.port == port.name],
        }
        for role, names in wired.items():
            if len(names) != 1:
                raise ValueError(f"rig {spec.name!r}: port {port.name!r} needs exactly one {role} (port: / point: "
                                 f"{port.name}), found {len(names)}{': ' + ', '.join(names) if names else ''}")
        found.append(PortInstruments(port.name, tuple(port.phases), wired["power source"][0], wired["meter"][0],
                                     wired["EV simulator"][0]))
    return found


def site_meters(spec: RigSpec) -> tuple[str, str]:
    """(the meter the controller reads, the reference meter the monitor reads): the meters at ``point:
    site``; the reference is the one named ``ref``, else a second one, else the controller's own."""
    names = [m.name for m in spec.meters if m.point == "site"]
    if not names:
        raise ValueError(f"rig {spec.name!r} has no site meter (a meter with point: site)")
    reference = REFERENCE_METER if REFERENCE_METER in names else names[-1]
    controller = next((n for n in names if n != reference), reference)
    return controller, reference


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
        self.ports = port_instruments(rig.spec, n)
        self.sources = [rig.power_source(p.source) for p in self.ports]
        self.evs = [rig.ev(p.ev) for p in self.ports]
        self.port_meters = [_Reading(rig.meter(p.meter), pool) for p in self.ports]
        self.site_meter = _Reading(rig.meter(site_meters(rig.spec)[0]), pool)
        self.setpoints = [_Setpoint(s, pool) for s in self.sources]
        self.wired = np.array([[1.0 if k + 1 in p.phases else 0.0 for k in range(3)] for p in self.ports])
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
        return _SiteRun(rig, scenario, controller, control_period, actions, monitor_hz, trace, rebuild).run()
    with Rig(spec or rig_for(scenario, scale)) as own:
        return _SiteRun(own, scenario, controller, control_period, actions, monitor_hz, trace, rebuild).run()


class _SiteRun:
    """One pass of ``run_on_rig``: every control period ``step`` plays the grid, reads the meters, lets EVs
    come and go, runs the charger's checks and the controller, and writes its set points; what it saw is
    kept per step for the ``RunResult``."""

    def __init__(self, rig: Rig, scenario: Scenario, controller: Controller, control_period: float,
                 actions: Sequence[Action], monitor_hz: float | None, trace: Path | None,
                 rebuild: Callable[[], Controller] | None) -> None:
        n = scenario.ports
        self.rig, self.scenario, self.controller = rig, scenario, controller
        self.period, self.rebuild = control_period, rebuild
        self.sessions = sorted(scenario.sessions, key=lambda s: s.arrival)
        self.steps = int(np.ceil(scenario.duration / control_period))
        self.t = np.arange(self.steps) * control_period
        self.base, self.enforced, self.announced, self.unmanaged = limit_trace(scenario, self.t)
        self.site_rec, self.fallback_rec = np.zeros((self.steps, 3)), np.zeros(self.steps, dtype=bool)
        self.port_rec, self.kwh_rec, self.set_rec = (np.zeros((self.steps, n)) for _ in range(3))
        self.wanting_rec = np.zeros((self.steps, n), dtype=bool)
        self.requested = np.array([s.energy_kwh for s in self.sessions])
        self.delivered, self.changes = np.zeros(len(self.sessions)), np.zeros(len(self.sessions))
        self.step_ms: list[float] = []
        self.decide_ms: list[float] = []
        self.starts: list[float] = []
        self.late = 0
        self.pending = sorted(actions, key=lambda a: a.time)
        self.monitor = None
        if monitor_hz is not None:
            _, reference = site_meters(rig.spec)
            self.monitor = Monitor(rig.meter(reference), rig.clock, float(self.enforced[0]), rate_hz=monitor_hz,
                                   trace=trace)
        # per port: the session there (index into sessions, -1 none) and what the controller knows of it
        self.session_at = np.full(n, -1)
        self.ev_max, self.arrival, self.departure = np.zeros(n), np.zeros(n), np.full(n, np.inf)
        self.start_kwh = np.zeros(n)
        self.done = np.zeros(n, dtype=bool)
        self.setpoint = np.zeros(n)
        self.first_set = np.full(n, np.nan)  # when the session at each port first got a set point
        self.next_session = 0
        self.unmanaged_now = scenario.unmanaged_a
        self.limit_now = float(self.enforced[0])
        self.notices = sorted((e.start - e.notice, f"demand response at {e.start:g} s: limit -{e.fraction:.0%}")
                              for e in scenario.events if e.kind == "demand_response" and e.notice > 0)

    def run(self) -> RigRunResult:
        n = self.scenario.ports
        with ThreadPoolExecutor(max_workers=3 * n + 4, thread_name_prefix="rig-site") as pool:
            self.site = site = RigSite(self.rig, self.scenario, self.controller, control_period=self.period,
                                       monitor=self.monitor, pool=pool, rebuild=self.rebuild)
            for k in range(n):
                site.evs[k].unplug()
                site.sources[k].set_voltage(STAGE_VOLTAGE_V)
                site.sources[k].set_current(STAGE_CURRENT_A)
                site.sources[k].set_power(0.0)
                site.setpoints[k].sent = 0.0
            self.readers = [*site.port_meters, site.site_meter]
            wait([f for f in (r.request() for r in self.readers) if f is not None], timeout=5.0)
            if self.monitor is not None:
                self.monitor.start()
            wall0 = wallclock.perf_counter()
            clock, t_start = self.rig.clock, self.rig.clock.now()
            try:
                for k in range(self.steps):
                    wait_s = self.t[k] - (clock.now() - t_start)
                    if wait_s > 0:
                        clock.sleep(wait_s)
                    elif wait_s < -self.period:
                        self.late += 1
                    w0 = wallclock.perf_counter()
                    self.step(k, float(self.t[k]))
                    self.step_ms.append((wallclock.perf_counter() - w0) * 1e3)
            finally:
                if self.monitor is not None:
                    self.monitor.stop()
                for source in site.sources:  # on every way out, a bench's rig included: outputs off, verified
                    source.safe_state()
            readings = [m.meter.read() for m in site.port_meters]
            for p in np.nonzero(self.session_at >= 0)[0]:
                self.delivered[self.session_at[p]] = readings[p].import_kwh - self.start_kwh[p]
            return self.result(wallclock.perf_counter() - wall0)

    def step(self, k: int, t: float) -> None:
        site = self.site
        site.now = t
        while self.pending and self.pending[0].time <= t:
            action = self.pending.pop(0)
            site.log(action.kind, action.detail, headroom=action.headroom, reduction_a=action.reduction_a)
            action.apply(site)
        self.grid(k, t)
        port_kwh = self.read_meters(t)
        self.sessions_come_and_go(t, port_kwh)
        connected = self.session_at >= 0
        so_far = np.where(connected, port_kwh - self.start_kwh, 0.0)
        remaining = np.where(connected, np.maximum(self.requested[np.maximum(self.session_at, 0)] - so_far, 0.0), 0.0)
        for p in np.nonzero(connected & ~self.done & (remaining <= 0.0))[0]:
            site.evs[p].stop()  # the EV has what its driver asked for: it stops drawing
            self.done[p] = True
        measured = np.array([max(r.value.current) if r.value else 0.0 for r in site.port_meters])
        site.charger_checks(t, connected & ~self.done, self.setpoint, measured)
        for p in np.nonzero(connected & np.isfinite(self.first_set) & (measured > 1.0))[0]:
            self.starts.append(t - self.first_set[p] - self.period)
            self.first_set[p] = np.inf  # measured once per session
        self.control(k, t, connected, measured, remaining)
        self.port_rec[k], self.kwh_rec[k], self.set_rec[k] = measured, port_kwh, self.setpoint
        self.wanting_rec[k] = connected & ~self.done

    def grid(self, k: int, t: float) -> None:
        """The limit the site must keep, and the building's own load."""
        site, v = self.site, self.scenario.phase_voltage
        while self.notices and self.notices[0][0] <= t:
            site.log("dr_notice", self.notices.pop(0)[1])
        if self.enforced[k] != self.limit_now:
            drop = bool(self.enforced[k] < self.limit_now)
            dr = _demand_response_at(self.scenario, t, self.period) if drop else None
            kind = ("dr_start" if dr else "limit_step") if drop else "limit_up"
            self.limit_now = float(self.enforced[k])
            settling = 0.0 if dr is not None and dr.notice > 0 else None
            if self.monitor is not None:
                self.monitor.set_limit(self.limit_now, kind, settling_s=settling)
            site.events.append(LoggedEvent(t, kind, f"limit {self.limit_now:g} A", drop, None, settling))
        if self.unmanaged[k] != self.unmanaged_now:  # an unmanaged-load step: the building draws more
            site.log("unmanaged_step", f"building load {self.unmanaged[k]:g} A",
                     headroom=bool(self.unmanaged[k] > self.unmanaged_now),
                     reduction_a=float(self.unmanaged[k] - self.unmanaged_now))
            self.unmanaged_now = float(self.unmanaged[k])
            if self.rig.plant is not None:
                with self.rig.plant.lock:
                    self.rig.plant.site.unmanaged_w = (self.unmanaged_now * v,) * 3

    def read_meters(self, t: float) -> Array:
        """The newest reading of every meter: wait a little for this step's, never for a hung one. Returns
        each port meter's import register [kWh]."""
        for r in self.readers:
            r.collect(t)
        fresh = [f for f in (r.request() for r in self.readers) if f is not None]
        wait(fresh, timeout=0.3 * self.period / self.rig.clock.scale)
        for r in self.readers:
            r.collect(t)
        return np.array([r.value.import_kwh if r.value else 0.0 for r in self.site.port_meters])

    def sessions_come_and_go(self, t: float, port_kwh: Array) -> None:
        """Departures (their energy read first), then arrivals through the EV simulators."""
        site = self.site
        for p in np.nonzero((self.session_at >= 0) & (self.departure <= t))[0]:
            self.delivered[self.session_at[p]] = port_kwh[p] - self.start_kwh[p]
            site.setpoints[p].write(0.0, t)
            site.evs[p].unplug()
            site.sources[p].output(False)
            site.log("departure", f"port {p + 1}: {self.sessions[self.session_at[p]].id}")
            self.session_at[p], self.setpoint[p], self.done[p], self.first_set[p] = -1, 0.0, False, np.nan
            self.ev_max[p], self.departure[p], site.stopped[p], site.heard[p] = 0.0, np.inf, False, False
        while self.next_session < len(self.sessions) and self.sessions[self.next_session].arrival <= t:
            s = self.sessions[self.next_session]
            p = s.port
            site.evs[p].configure(soc=START_SOC_PCT)
            site.evs[p].plug_in()
            site.evs[p].start()
            site.sources[p].set_power(0.0)
            site.setpoints[p].sent = 0.0
            site.sources[p].output(True)
            self.session_at[p], self.done[p], self.start_kwh[p] = self.next_session, False, port_kwh[p]
            self.ev_max[p], self.arrival[p], self.departure[p] = s.max_current_a, s.arrival, s.departure
            site.log("arrival", f"port {p + 1}: {s.id}, {s.energy_kwh:g} kWh, up to {s.max_current_a:g} A",
                     headroom=True)
            self.next_session += 1

    def control(self, k: int, t: float, connected: Array, measured: Array, remaining: Array) -> None:
        """The controller's observation, its decision, and the set points written as power limits."""
        site, v = self.site, self.scenario.phase_voltage
        reading = site.site_meter.value
        site_a = np.asarray(reading.current if reading else (0.0, 0.0, 0.0), dtype=float)
        self.site_rec[k] = site_a
        obs = Observation(
            time=t, connected=connected, phases=site.phases_now(connected), ev_max_a=self.ev_max.copy(),
            measured_a=measured, remaining_kwh=remaining, arrival=self.arrival.copy(), departure=self.departure.copy(),
            site_a=site_a, site_age_s=float(site.site_meter.age(t)),
            limits={"breaker": np.full(3, self.base[k]), "dr": np.full(3, self.announced[k])},
            price=self.scenario.tariff.price(t, self.scenario.start_h), phase_voltage=v,
        )
        d0 = wallclock.perf_counter()
        decision = site.decide(obs)
        if decision is not None:
            self.decide_ms.append((wallclock.perf_counter() - d0) * 1e3)
            new = np.where(connected, np.minimum(decision, self.ev_max), 0.0)
            moved = np.abs(new - self.setpoint) > 0.5
            self.changes[self.session_at[moved & connected]] += 1
            self.setpoint = new
            self.first_set[connected & np.isnan(self.first_set) & (new > 0)] = t
        self.fallback_rec[k] = site.fallback
        for p in np.nonzero(connected & ~site.stopped)[0]:
            watts = 0.0 if self.done[p] else round(float(self.setpoint[p]) * v * float(site.wired[p].sum()), 0)
            site.setpoints[p].write(watts, t)
        for w in site.setpoints:
            w.poll()

    def result(self, wall: float) -> RigRunResult:
        scenario, sessions, site = self.scenario, self.sessions, self.site
        run = RunResult(
            scenario=scenario, controller=f"{self.controller.name} on rig", architecture=self.controller.architecture,
            config=SimulationConfig(dt=self.period, control_period=self.period), t=self.t, site_a=self.site_rec,
            limit_a=np.repeat(self.enforced[:, None], 3, axis=1), price=scenario.tariff.prices(self.t, scenario.start_h),
            port_t=self.t, port_a=self.port_rec, port_kwh=self.kwh_rec - self.kwh_rec[:1],
            session_ids=[s.id for s in sessions], requested_kwh=self.requested,
            delivered_kwh=np.minimum(self.delivered, self.requested), setpoint_changes=self.changes,
            session_hours=np.array([(s.departure - s.arrival) / 3600.0 for s in sessions]),
            step_ms=np.asarray(self.decide_ms), fallback_s=float(self.fallback_rec.sum()) * self.period,
            event_times=event_times(scenario), wall_s=wall,
        )
        return RigRunResult(
            run, self.late, np.asarray(self.step_ms), np.asarray(self.starts), setpoint_a=self.set_rec,
            wanting=self.wanting_rec, port_phases=site.wired.copy(),
            events=site.events, monitor=self.monitor, fallback_flags=self.fallback_rec,
            write_errors=sum(w.errors for w in site.setpoints), read_errors=sum(r.errors for r in self.readers),
            clock_scale=self.rig.clock.scale,
        )


def _demand_response_at(scenario: Scenario, t: float, period: float) -> GridEvent | None:
    """The demand-response event that starts at ``t`` (a limit drop then settles in 0 s if it was announced)."""
    return next((e for e in scenario.events if e.kind == "demand_response" and e.start <= t < e.start + period), None)


__all__ = ["Action", "RigRunResult", "RigSite", "rig_for", "run_on_rig"]
