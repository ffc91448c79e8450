"""Load-limit test conditions: a short site scenario (ports, EVs, grid events) and the faults injected into
the rig while it runs, run with a controller through the rig's drivers and judged on the reference meter.

The load-limit and fault-recovery suites are lists of ``Condition``; ``run_condition`` runs one with one
controller (``hil.site.rig_run.run_on_rig`` with a 10 Hz monitor) and returns a ``SiteVerdict``: the
compliance report with the architecture's settling time, and the run behind it. ``record`` turns a verdict
into measurements with their limits, the plots and the traces of the test's report. ``hil selftest`` runs
the same conditions with deliberately broken controllers.

Controllers are named as ``hil compare`` names them (``parallel``, ``adaptive``, ...) or as
``MODULE_OR_FILE.py:NAME`` for one of your own: ``NAME`` is a callable taking the ``Scenario`` and returning
a controller: a key of that module's ``CATALOGUE`` of such callables, or an attribute of the module.

Units: seconds of the rig's clock, A per phase.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import numpy as np

from hil.compliance.check import SETTLING_S, SUSTAINED_S, ComplianceReport
from hil.compliance.monitor import RATE_HZ
from hil.compliance.sessions import RECOVERY_S, SESSION_START_S, Rule, minimum_current, service
from hil.control import SiteControl
from hil.controllers.observation import Controller
from hil.controllers.reference import CONTROLLERS
from hil.rig.model import DutSpec, RigSpec
from hil.rig.rig import Rig
from hil.site.rig_run import Action, RigRunResult, port_instruments, rig_for, run_on_rig
from hil.site.scenarios import GridEvent, Scenario, Session, Tariff
from hil.site.under_test import SiteUnderTest

SCALE = 10.0
"""Clock scale of the emulated site rigs: fast enough for CI, slow enough that the 10 Hz monitor and the
1 s control loop keep their rates on a 2-core machine."""
FLAT = Tariff("flat", "EUR", ((0.0, 0.25),), 0.0)
DETECTION = "time to detection"
"""The measurement ``record`` writes for a failed verdict: from the trigger to the first failing window [s]."""
BREAKER_MARGIN = 1.25
"""A managed limit sits below the feeder's breaker (80 A managed on a 100 A breaker)."""
STAYING = float("inf")
"""Departure of an EV that stays past the end of the run (``site`` turns it into a deadline)."""

ControllerFactory = Callable[[Scenario], Controller]
PRODUCT = "dut"
"""The controller name of the rig's device under test when it is a site's load manager (``dut.kind:
site_controller``): the suites then run it instead of the reference controllers."""
REFERENCE = "adaptive"
"""The reference controller a product's verdict is shown next to, on the same condition."""


@dataclass(frozen=True)
class Condition:
    """One test condition. ``expected`` says in words what a compliant controller does."""

    name: str
    expected: str
    scenario: Scenario
    actions: tuple[Action, ...] = ()
    trigger_s: float = 0.0
    """When the condition starts (the limit step, the fault): detection times count from here [s]."""
    settling_s: float | None = None
    """Settling time to judge with [s]; ``None``: the controller's architecture's (``SETTLING_S``)."""
    min_ports: int = 1
    """On a bench with fewer ports than the condition's, the fewest that still test what it is about."""
    wiring: bool = False
    """The condition is about the phases its EVs draw: a bench's ports must be wired as its sessions say."""


class Unfit(ValueError):
    """A condition that cannot run on a rig, and why (the test skips saying so)."""


def on_bench(condition: Condition, spec: RigSpec, has_plant: bool) -> Condition:
    """``condition``, written for the reference site (its ports at ``evse_max_a``, three-phase unless a session
    says otherwise), on the ports of the rig ``spec`` in its order, each with the instruments wired to it.

    The sessions of the ports the rig has are kept, each EV's maximum capped at what the port's power source
    may deliver (its power limit over the phase voltage and the port's phases) and drawing on the port's
    phases; the site's limits and unmanaged load scale with the share of the reference site's nameplate
    those ports carry, so the site stays as congested as the condition meant. ``Unfit`` says why it cannot
    run there: fewer ports than ``min_ports``, a wiring it depends on, an unmanaged-load step without a plant
    to step it, or an instrument missing on a port."""
    scenario = condition.scenario
    try:
        ports = port_instruments(spec, min(len(spec.ports), scenario.ports))
    except ValueError as exc:
        raise Unfit(str(exc)) from None
    n = len(ports)
    if n < condition.min_ports:
        raise Unfit(f"{condition.name} needs at least {condition.min_ports} ports; rig {spec.name!r} has {n}")
    if not has_plant and any(e.kind == "unmanaged_step" for e in scenario.events):
        raise Unfit(f"{condition.name} steps the building's load; rig {spec.name!r} has no controllable load "
                    "(only an emulated plant has one)")
    sources = {s.name: s for s in spec.power_sources}
    v = scenario.phase_voltage
    port_max = [min(scenario.evse_max_a, sources[p.source].limits.power / (v * len(p.phases))) for p in ports]
    sessions = []
    for s in scenario.sessions:
        if s.port >= n:
            continue
        wired = tuple(k - 1 for k in ports[s.port].phases)
        if condition.wiring and wired != tuple(s.phases):
            raise Unfit(f"{condition.name} needs port {ports[s.port].port!r} wired to phases "
                        f"{[k + 1 for k in s.phases]}; it is wired to {list(ports[s.port].phases)}")
        sessions.append(replace(s, max_current_a=min(s.max_current_a, port_max[s.port]), phases=wired))
    share = sum(port_max) / scenario.nameplate_a
    fitted = replace(scenario, ports=n, evse_max_a=max(port_max), limit_a=scenario.limit_a * share,
                     breaker_a=scenario.breaker_a * share, unmanaged_a=scenario.unmanaged_a * share,
                     sessions=tuple(sessions), port_phase=scenario.port_phase[:n])
    return replace(condition, scenario=fitted)


@dataclass
class ProductRecord:
    """What a product under test left: each charger's OCPP trace (JSON lines) and its own log."""

    traces: dict[str, str]
    log: str


@dataclass
class SiteVerdict:
    """A condition's verdict: the load-limit compliance report and the session rules (minimum current,
    service), with the run behind them."""

    condition: Condition
    controller: str
    architecture: str
    settling_s: float | None
    report: ComplianceReport
    result: RigRunResult
    rules: list[Rule] = field(default_factory=list)
    product: ProductRecord | None = None
    reference: "SiteVerdict | None" = None
    """The reference controller on the same condition, for a product under test."""

    @property
    def reports_fallback(self) -> bool:
        """Whether the controller says when it runs its safe allocation (a product under test does not: its
        fallback is only seen in what the site draws)."""
        return self.product is None

    @property
    def passed(self) -> bool:
        return self.report.passed and all(r.passed for r in self.rules)

    @property
    def detection_s(self) -> float | None:
        """From the condition's trigger until the first failure of a criterion or rule [s]; ``None`` when it
        passed."""
        firsts = [f for f in (self.report.first_failure_s, *(r.first_failure_s for r in self.rules if not r.passed))
                  if f is not None]
        return None if not firsts else max(min(firsts) - self.condition.trigger_s, 0.0)

    def failures(self) -> list[str]:
        """Each failed requirement, with its source and what was measured against what was allowed."""
        return self.report.failures() + [rule.message() for rule in self.rules if not rule.passed]

    def summary(self) -> str:
        r = self.report
        settle = "never" if r.worst_settling_s is None else f"{r.worst_settling_s:.1f} s"
        head = f"{self.condition.name} with {self.controller}: {'PASS' if self.passed else 'FAIL'}"
        failed = self.failures()
        if failed:
            return head + "\n- " + "\n- ".join(failed)
        return (f"{head}; max overshoot {r.max_overshoot_a:.1f} A, worst settling {settle} (T_s {self.settling_s} s)")


def site(name: str, sessions: list[Session], *, limit_a: float, duration_s: float, events: tuple[GridEvent, ...] = (),
         unmanaged_a: float = 0.0, ports: int | None = None, evse_max_a: float = 32.0,
         breaker_a: float | None = None) -> Scenario:
    """A short site scenario: ``sessions`` on a feeder of ``limit_a`` [A per phase] for ``duration_s``. EVs
    without a departure stay an hour past the end (what a planner sees as their deadline). The breaker
    (``breaker_a``, for the hard criterion) defaults to ``BREAKER_MARGIN`` above the managed limit."""
    sessions = [s if s.departure < STAYING else replace(s, departure=duration_s + 3600.0) for s in sessions]
    return Scenario(
        name=name, seed=0, ports=ports or (max(s.port for s in sessions) + 1), phase_voltage=230.0, evse_max_a=evse_max_a,
        limit_a=float(limit_a), breaker_a=float(breaker_a or limit_a * BREAKER_MARGIN), unmanaged_a=float(unmanaged_a), tariff=FLAT, start_h=8.0,
        duration=float(duration_s), sessions=tuple(sessions), events=events,
    )


def ev(port: int, arrival_s: float = 0.0, *, max_a: float = 32.0, phases: tuple[int, ...] = (0, 1, 2),
       energy_kwh: float = 100.0) -> Session:
    """An EV at ``port`` (0-based) from ``arrival_s`` past the end of the run, wanting more than it delivers."""
    return Session(f"ev{port + 1}", port, float(arrival_s), STAYING, energy_kwh, float(max_a), phases)


def controller_factory(name: str) -> ControllerFactory:
    """A reference controller by name, or ``MODULE_OR_FILE.py:NAME`` (see the module docstring)."""
    if name in CONTROLLERS:
        return CONTROLLERS[name]
    where, sep, attr = name.rpartition(":")
    if not sep or not where:
        raise ValueError(f"unknown controller {name!r}: not one of {', '.join(CONTROLLERS)} and not MODULE:NAME")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"controller {name!r}: no file {path}")
        module = import_file(path)
    else:
        module = importlib.import_module(where)
    found = getattr(module, "CATALOGUE", {}).get(attr) or getattr(module, attr, None)
    if not callable(found):
        raise ValueError(f"controller {name!r}: {where} has no callable {attr} (nor a CATALOGUE entry of that name)")
    return found  # type: ignore[no-any-return]


def import_file(path: Path) -> ModuleType:
    """The Python file at ``path`` imported (afresh) as a module, its folder on the import path meanwhile (so
    that it may import its neighbours); ``ValueError`` naming the file when it cannot be imported."""
    name = f"hil_user_{path.resolve().as_posix().replace('/', '_').replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user's file: whatever it raises is one line naming it
        del sys.modules[name]
        raise ValueError(f"cannot import {path}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(folder)
    return module


def run_condition(condition: Condition, factory: ControllerFactory, *, rig: Rig | None = None, scale: float = SCALE,
                  trace: Path | None = None, label: str | None = None, rate_hz: float = RATE_HZ) -> SiteVerdict:
    """Run ``condition`` with the controller ``factory`` builds, on ``rig`` (a bench) or on an emulated rig
    of the condition's ports at ``scale``, with the monitor sampling at ``rate_hz``, and judge it."""
    controller = factory(condition.scenario)
    result = run_on_rig(condition.scenario, controller, scale=scale, rig=rig, actions=condition.actions,
                        monitor_hz=rate_hz, trace=trace, rebuild=lambda: factory(condition.scenario))
    return _judged(condition, label or controller.name, controller.architecture, result)


def run_with_product(condition: Condition, dut: DutSpec, control: SiteControl, *, scale: float = 1.0,
                     trace: Path | None = None, rate_hz: float = RATE_HZ, reference: str | None = REFERENCE) -> SiteVerdict:
    """Run ``condition`` with the site's load manager under test in the loop (``hil.site.under_test``) on an
    emulated site, judge it as a reference controller is judged, and run the controller ``reference`` (a
    reference name; ``None``: none) on the same condition for the report. ``scale``: the site's clock, real time unless the
    product runs on the same scaled time (a simulation build). A launched product's output goes to
    ``trace`` with the suffix ``.dut.log``."""
    scenario = condition.scenario
    log = trace.with_suffix(".dut.log") if trace is not None else None
    with Rig(rig_for(scenario, scale, site_meter=dut.site_meter)) as rig:
        with SiteUnderTest(scenario, rig, dut, control, log_path=log) as product:
            result = run_on_rig(scenario, product, rig=rig, actions=condition.actions, monitor_hz=rate_hz, trace=trace)
            traces = product.traces()
            tail = product.log_tail(10_000)
    verdict = _judged(condition, dut.name, dut.architecture, result)
    verdict.product = ProductRecord(traces, tail)
    if reference is not None:
        verdict.reference = run_condition(condition, controller_factory(reference), rate_hz=rate_hz, label=reference)
    return verdict


def _judged(condition: Condition, name: str, architecture: str, result: RigRunResult) -> SiteVerdict:
    assert result.monitor is not None
    settling = condition.settling_s if condition.settling_s is not None else SETTLING_S.get(architecture, 10.0)
    report = result.monitor.judge(settling, breaker_a=condition.scenario.breaker_a, voltage=condition.scenario.phase_voltage)
    return SiteVerdict(condition, name, architecture, settling, report, result, rules=session_rules(condition, result, settling))


def session_rules(condition: Condition, result: RigRunResult, settling_s: float | None) -> list[Rule]:
    """The minimum-current and service rules on a run (``hil.compliance.sessions``), the site's current and
    limit taken from the reference meter at each control step. No rule for the negative control (no
    settling time): it coordinates nothing."""
    if settling_s is None or not result.setpoint_a.size:
        return []
    assert result.monitor is not None
    t = result.run.port_t
    mt, current, limit = result.monitor.series()
    at = np.clip(np.searchsorted(mt, t, side="right") - 1, 0, max(len(mt) - 1, 0))
    site_a, limit_a = (current[at], limit[at]) if len(mt) else (np.zeros((len(t), 3)), np.full((len(t), 3), np.inf))
    return [minimum_current(t, result.setpoint_a),
            service(t, result.setpoint_a, result.run.port_a, result.wanting, result.port_phases, limit_a, site_a,
                    max(settling_s, SETTLING_S["local"] or 0.0) + SESSION_START_S, excused_spans(condition))]


def excused_spans(condition: Condition) -> list[tuple[float, float]]:
    """When the service rule is not judged: from each ``safe_pause`` fault until ``RECOVERY_S`` after the
    next ``fault_cleared`` action (to the end of the run when none follows) [s]."""
    spans = []
    actions = sorted(condition.actions, key=lambda a: a.time)
    for k, a in enumerate(actions):
        if a.safe_pause:
            cleared = next((b.time for b in actions[k + 1:] if b.kind == "fault_cleared"), np.inf)
            spans.append((a.time, cleared + RECOVERY_S))
    return spans


def record(verdict: SiteVerdict, measurements: object) -> None:
    """The verdict as measurements with their limits, plus plots and traces, for the test's report.

    ``measurements`` is the ``measurements`` fixture (``hil.report.measurement.Measurements``); the
    controller is its parameter already (set before the run, so that an error is attributed too).
    """
    from hil import plots
    from hil.report.measurement import Measurements

    assert isinstance(measurements, Measurements)
    r, c = verdict.report, verdict.condition
    measurements.parameter("condition", c.name)
    measurements.parameter("settling time [s]", verdict.settling_s)
    measurements.record("time above the band outside the settling windows", r.steady_violation_s, "s", high=0.0)
    measurements.record("longest time above the band", r.longest_above_s, "s", high=60.0)
    measurements.record("events settled within the settling time", r.settled_fraction * 100.0, "%", low=100.0)
    measurements.record("transient criterion (1 = every window within its allowance)", float(r.transient_pass), "",
                        low=1.0)
    measurements.record("hard safety criterion (1 = passed)", float(r.hard_pass), "", low=1.0)
    if r.sustained_excess_a is not None and r.sustained_allowed_a is not None:
        measurements.record(f"sustained excess: steady-state {SUSTAINED_S:g} s mean above the limit, worst",
                            r.sustained_excess_a, "A", high=r.sustained_allowed_a)
    for rule in verdict.rules:
        measurements.record(rule.requirement, rule.measured, rule.unit, low=rule.low, high=rule.high)
    measurements.record("max overshoot", r.max_overshoot_a, "A")
    measurements.record("max overshoot", r.max_overshoot_pct, "%")
    measurements.record("overshoot integral", r.overshoot_integral_as, "A s")
    measurements.record("violation episodes", r.episodes, "")
    if r.worst_settling_s is not None:
        measurements.record("worst settling time", r.worst_settling_s, "s")
    if verdict.detection_s is not None:
        measurements.record(DETECTION, verdict.detection_s, "s")
    monitor = verdict.result.monitor
    assert monitor is not None
    measurements.record("reference meter samples", len(monitor.series()[0]), "", low=1.0)
    if verdict.result.run.fallback_s:
        measurements.record("time in fallback", verdict.result.run.fallback_s, "s")
    fig = monitor.plot(f"{c.name}: {verdict.controller} ({r.verdict})")
    measurements.figure(fig, "site current against the limit")
    import matplotlib.pyplot as plt

    plt.close(fig)
    with tempfile.TemporaryDirectory() as tmp:
        measurements.figure(plots.port_currents(verdict.result.run, Path(tmp) / "ports.png"), "current per port")
        measurements.figure(plots.port_energy(verdict.result.run, Path(tmp) / "energy.png"), "energy per port")
        measurements.figure(plots.state_of_charge(verdict.result.run, Path(tmp) / "charge.png"),
                            "each session's charge against its request")
    _attach_traces(verdict)
    if verdict.reference is not None:
        _compare_with_reference(verdict, verdict.reference, measurements)


def _compare_with_reference(verdict: SiteVerdict, reference: SiteVerdict, measurements: object) -> None:
    """The product's site current next to the reference controller's on the same condition, its verdict as
    information, and the product's own traces."""
    import allure
    import matplotlib.pyplot as plt

    from hil.report.measurement import Measurements

    assert isinstance(measurements, Measurements) and verdict.result.monitor and reference.result.monitor
    measurements.record(f"{reference.controller} on the same condition: time above the band outside the settling "
                        "windows", reference.report.steady_violation_s, "s")
    measurements.record(f"{reference.controller} on the same condition: energy delivered",
                        float(reference.result.run.delivered_kwh.sum()), "kWh")
    measurements.record("energy delivered", float(verdict.result.run.delivered_kwh.sum()), "kWh")
    fig, ax = plt.subplots(figsize=(9, 4))
    for v, style in ((verdict, "-"), (reference, "--")):
        assert v.result.monitor is not None
        t, current, limit = v.result.monitor.series()
        ax.plot(t, current.max(axis=1), style, label=f"{v.controller} ({v.report.verdict})")
    t, _, limit = verdict.result.monitor.series()
    ax.plot(t, limit.max(axis=1), "k:", label="limit")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("site current, highest phase [A]")
    ax.set_title(f"{verdict.condition.name}: the product against {reference.controller}")
    ax.legend(loc="lower left")
    measurements.figure(fig, f"site current against {reference.controller} on the same condition")
    plt.close(fig)
    if verdict.product is not None:
        for cs_id, jsonl in verdict.product.traces.items():
            allure.attach(jsonl, name=f"OCPP trace {cs_id}", attachment_type=allure.attachment_type.JSON, extension="jsonl")
        if verdict.product.log:
            allure.attach(verdict.product.log, name="device under test: its log", attachment_type=allure.attachment_type.TEXT)


def _attach_traces(verdict: SiteVerdict) -> None:
    import allure

    monitor = verdict.result.monitor
    assert monitor is not None
    t, current, limit = monitor.series()
    rows = ["t_s,i_l1_a,i_l2_a,i_l3_a,limit_l1_a,limit_l2_a,limit_l3_a"]
    rows += [",".join(f"{x:.3f}" for x in row) for row in np.column_stack([t, current, limit])]
    allure.attach("\n".join(rows) + "\n", name="reference meter samples", attachment_type=allure.attachment_type.CSV)
    events = ["t_s,kind,detail"] + [f"{e.time:.1f},{e.kind},\"{e.detail}\"" for e in verdict.result.events]
    allure.attach("\n".join(events) + "\n", name="event log", attachment_type=allure.attachment_type.CSV)
