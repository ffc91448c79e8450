"""Every deliberately broken controller fails the condition that targets it, and every reference controller
and every legal variant (``legal_controllers``) passes every condition (in the in-memory loop, on small
synthetic sites: 4 ports, a few minutes).

A condition is judged as the suites judge it on a rig: the load-limit compliance check with the grid events,
the arrivals and the injected faults as headroom events (``hil.compliance.check``), and the session rules on the
controller's set points (``hil.compliance.sessions``: minimum current, service; a fault that lets a legal
controller pause every session excuses service until the recovery time after it clears).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest

from hil.compliance.check import SETTLING_S, ComplianceReport, Event, check
from hil.compliance.sessions import RECOVERY_S, Rule, minimum_current, service
from hil.controllers.observation import Array, Controller, Decision, Observation
from hil.controllers.reference import CONTROLLERS
from hil.site.conditions import BREAKER_MARGIN
from hil.site.scenarios import GridEvent, Scenario, Session, Tariff
from hil.site.simulation import RunResult, SimulationConfig, simulate
from broken_controllers import CATALOGUE, CAUGHT_BY
from legal_controllers import CATALOGUE as LEGAL

REFERENCES = ("sequential", "timer", "parallel", "priority", "adaptive")
LIMIT_A = 80.0
UNMANAGED_A = 8.0
DURATION_S = 300.0
FLAT = Tariff("flat", "USD", ((0.0, 0.2),), 0.0)
THREE = (0, 1, 2)


def site(arrivals: Sequence[float] = (0.0, 5.0, 10.0, 15.0), *, phases: Sequence[tuple[int, ...]] | None = None,
         events: tuple[GridEvent, ...] = (), duration: float = DURATION_S, limit_a: float = LIMIT_A,
         energy_kwh: float = 100.0) -> Scenario:
    """Four 32 A ports under ``limit_a`` per phase (a breaker ``BREAKER_MARGIN`` above) with 8 A of building
    load; one session per port arriving at ``arrivals`` [s], staying to the end and wanting ``energy_kwh``
    (three-phase unless ``phases`` says otherwise)."""
    drawn = phases or [THREE] * len(arrivals)
    sessions = tuple(Session(f"s{k}", k, a, duration, energy_kwh, 32.0, drawn[k]) for k, a in enumerate(arrivals))
    return Scenario(name="broken-site", seed=0, ports=4, phase_voltage=230.0, evse_max_a=32.0, limit_a=limit_a,
                    breaker_a=BREAKER_MARGIN * limit_a, unmanaged_a=UNMANAGED_A, tariff=FLAT, start_h=8.0,
                    duration=duration, sessions=sessions, events=events)


def build(name: str, scenario: Scenario) -> Controller:
    return (CONTROLLERS.get(name) or CATALOGUE.get(name) or LEGAL[name])(scenario)


@dataclass
class Recorded:
    """``inner`` with what it decided at each call recorded: time, set points, which sessions wanted energy."""

    inner: Controller
    t: list[float] = field(default_factory=list)
    setpoints: list[Array] = field(default_factory=list)
    drawn: list[Array] = field(default_factory=list)
    wanting: list[Array] = field(default_factory=list)
    name: str = field(init=False)
    architecture: str = field(init=False)

    def __post_init__(self) -> None:
        self.name, self.architecture = self.inner.name, self.inner.architecture

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        self.t.append(obs.time)
        self.setpoints.append(np.where(obs.connected, np.asarray(decision.setpoints_a, dtype=float), 0.0))
        self.drawn.append(np.asarray(obs.measured_a, dtype=float))
        self.wanting.append(obs.connected & (obs.remaining_kwh > 0))
        return decision


@dataclass
class Verdict:
    """A condition's verdict: the compliance report and the session rules."""

    report: ComplianceReport
    rules: list[Rule]
    run: RunResult

    @property
    def passed(self) -> bool:
        return self.report.passed and all(r.passed for r in self.rules)

    def why(self) -> dict[str, Any]:
        return {"compliance": self.report.verdict, "report": self.report.to_dict(),
                **{r.requirement: r.detail for r in self.rules if not r.passed}}


@dataclass(frozen=True)
class Fault:
    """An injected fault as the rig logs it: a headroom event (with its own settling time if given) and the
    span in which service is excused (from it until ``RECOVERY_S`` after it clears)."""

    at: float
    reduction_a: float = 0.0
    settling_s: float | None = None
    cleared: float | None = None
    safe_pause: bool = True


def judge(scenario: Scenario, controller: Controller, config: SimulationConfig = SimulationConfig(),
          faults: Sequence[Fault] = ()) -> Verdict:
    """Run ``controller`` on ``scenario`` in the in-memory loop and judge it as the suites do."""
    recorded = Recorded(controller)
    run = simulate(scenario, recorded, config)
    events = [Event(t, kind, red, 0.0 if kind == "dr_notice" else None) for t, kind, red in run.event_times]
    events += [Event(s.arrival, "arrival") for s in scenario.sessions]
    events += [Event(f.at, "fault", f.reduction_a, f.settling_s) for f in faults]
    settling = SETTLING_S.get(run.architecture, 10.0)
    report = check(run.t, run.site_a, run.limit_a, events, settling_s=settling, breaker_a=scenario.breaker_a)
    t = np.asarray(recorded.t)
    steps = np.searchsorted(run.t, t)
    phases = np.zeros((scenario.ports, 3))
    for s in scenario.sessions:
        phases[s.port, list(s.phases)] = 1.0
    excused = [(f.at, (np.inf if f.cleared is None else f.cleared + RECOVERY_S)) for f in faults if f.safe_pause]
    rules = [minimum_current(t, np.asarray(recorded.setpoints)),
             service(t, np.asarray(recorded.setpoints), np.asarray(recorded.drawn), np.asarray(recorded.wanting), phases,
                     run.limit_a[steps],
                     run.site_a[steps], max(settling or 0.0, SETTLING_S["local"] or 0.0), excused)]
    return Verdict(report, rules, run)


@dataclass
class Declared:
    """F6 as the rig loop reports it: ``port``'s EV declares ``phases``; the observation shows the declared
    phases while the port meter sees it draw nothing (below 2 A) and the metered ones once it draws."""

    inner: Controller
    port: int
    phases: tuple[int, ...]
    name: str = field(init=False)
    architecture: str = field(init=False)

    def __post_init__(self) -> None:
        self.name, self.architecture = self.inner.name, self.inner.architecture

    def decide(self, obs: Observation) -> Decision:
        phases = obs.phases.copy()
        if obs.connected[self.port] and obs.measured_a[self.port] <= 2.0:
            phases[self.port] = [1.0 if k in self.phases else 0.0 for k in range(3)]
        return self.inner.decide(replace(obs, phases=phases))


@dataclass
class IgnoresPilot:
    """F4 on the plant side: from ``at`` [s] the EV on ``port`` draws its maximum whatever its set point says
    (the controller is not told: it sees only the port meter)."""

    inner: Controller
    port: int
    at: float
    name: str = field(init=False)
    architecture: str = field(init=False)

    def __post_init__(self) -> None:
        self.name, self.architecture = self.inner.name, self.inner.architecture

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        if obs.time < self.at:
            return decision
        sp = np.array(decision.setpoints_a, dtype=float)
        sp[self.port] = obs.ev_max_a[self.port]
        return Decision(sp, decision.fallback)


@dataclass
class Restarted:
    """The controller process dies at ``at`` [s] and comes back at once with no state (``build()`` anew)."""

    build: Callable[[], Controller]
    at: float
    inner: Controller = field(init=False)
    name: str = field(init=False)
    architecture: str = field(init=False)
    _restarted: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.inner = self.build()
        self.name, self.architecture = self.inner.name, self.inner.architecture

    def decide(self, obs: Observation) -> Decision:
        if not self._restarted and obs.time >= self.at:
            self.inner, self._restarted = self.build(), True
        return self.inner.decide(obs)


def charging_after(run: RunResult, t: float) -> float:
    """Mean current the ports draw after ``t`` [A per phase, summed over ports]."""
    return float((run.site_a[run.t >= t] - UNMANAGED_A).max(axis=1).mean())


# -- the conditions --------------------------------------------------------------------------------------------
STEP = site(events=(GridEvent("limit_step", 100.0, fraction=0.6),))
DR = site(events=(GridEvent("demand_response", 100.0, duration=120.0, fraction=0.35),))
DR_NOTICE = site(events=(GridEvent("demand_response", 100.0, duration=120.0, fraction=0.35, notice=30.0),))
UNMANAGED_STEP = site(events=(GridEvent("unmanaged_step", 100.0, fraction=0.3),))
IMBALANCE = site(phases=[(0,), (0,), (0,), THREE])
SCARCITY = site(events=(GridEvent("limit_step", 100.0, fraction=0.35),))
"""The limit to 35 % with 8 A of building load: an equal share of what is left is below 6 A."""
SHORT = site(energy_kwh=0.08, limit_a=40.0, duration=120.0)
"""Four EVs wanting 0.08 kWh each, 5 s apart, behind 40 A: served in turn."""
STALE_STEP = site(events=(GridEvent("unmanaged_step", 130.0, fraction=0.3),))
STALE = SimulationConfig(meter_stale=((100.0, 160.0),))
"""F2: the site meter frozen for a minute."""
F6_SITE = site((30.0, 0.0, 0.0, 0.0), phases=[THREE, THREE, THREE, (1,)])


def many(name: str) -> Verdict:
    return judge(site(), build(name, site()))


def step(name: str) -> Verdict:
    return judge(STEP, build(name, STEP), SimulationConfig(ev_delay=5.0))


def meter_low(name: str) -> Verdict:
    return judge(site(), build(name, site()), SimulationConfig(meter_gain=0.8, meter_gain_from=100.0), [Fault(100.0)])


def stale_step(name: str) -> Verdict:
    return judge(STALE_STEP, build(name, STALE_STEP), SimulationConfig(meter_stale=((100.0, 220.0),)),
                 [Fault(100.0, cleared=220.0)])


def on(scenario: Scenario, label: str) -> Callable[[str], Verdict]:
    """The condition ``label``: a controller by name on ``scenario``, judged, with no fault."""
    def condition(name: str) -> Verdict:
        return judge(scenario, build(name, scenario))
    condition.__name__ = label
    return condition


demand_response = on(DR, "demand_response")
demand_response_with_notice = on(DR_NOTICE, "demand_response_with_notice")
unmanaged_step = on(UNMANAGED_STEP, "unmanaged_step")
imbalance = on(IMBALANCE, "imbalance")
scarcity = on(SCARCITY, "scarcity")
short_sessions = on(SHORT, "short_sessions")


def declared_single_phase(name: str) -> Verdict:
    return judge(F6_SITE, Declared(build(name, F6_SITE), port=0, phases=(0,)))


def ignores_pilot(name: str) -> Verdict:
    return judge(site(), IgnoresPilot(build(name, site()), port=1, at=100.0), faults=[
        Fault(100.0, reduction_a=32.0, settling_s=20.0, safe_pause=False)])


def restart(name: str) -> Verdict:
    return judge(site(), Restarted(lambda: build(name, site()), at=120.0))


CONDITIONS: dict[str, Callable[[str], Verdict]] = {
    "IgnoresLimitAboveTwoSessions": many,
    "LatchesLimitAtStart": step,
    "AllocatesOnlyOnSessionChange": unmanaged_step,
    "IgnoresDemandResponse": demand_response,
    "ReducesOnlyWhenDemandResponseStarts": demand_response_with_notice,
    "CombinesLimitsWithMax": demand_response,
    "BudgetsCommissionedBuildingLoad": unmanaged_step,
    "SmoothsBuildingLoadRises": unmanaged_step,
    "BalancesPowerNotPhases": imbalance,
    "ChecksEachPortAgainstTheLimit": many,
    "OscillatingIntegral": step,
    "IncreasesBeforeDecreases": many,
    "DebouncesLimitDrops": step,
    "SlowToReduce": step,
    "AimsAtBandEdge": many,
    "FillsToTheBand": many,
    "SharesWithoutMinimum": scarcity,
    "TrickleToWaitingSessions": scarcity,
    "PausesWithOneAmp": scarcity,
    "AdmitsArrivalsOnlyAtRotation": short_sessions,
    "HaltsAfterSessionEnds": short_sessions,
    "SequentialAdvancesOnlyOnUnplug": short_sessions,
    "PausesAllWhenShareBelowMinimum": scarcity,
    "TrustsDriftingMeter": meter_low,
    "HeadroomFromSiteMeterUnchecked": meter_low,
    "NoFallbackOnStaleMeter": stale_step,
    "StaleMeterTimeoutOneMinute": stale_step,
    "UnsafeFallbackIgnoresBuildingLoad": stale_step,
    "AssumesEvsFollowPilot": ignores_pilot,
    "TrustsDeclaredPhases": declared_single_phase,
    "AdoptsRunningSessionsAtMaximum": restart,
}
"""Conditions by the defect they target."""
EVERY_CONDITION = {c.__name__: c for c in CONDITIONS.values()}
EXTRA = {"StarvesOnePort", "NoResumeAfterOutage", "ForgetsSessionsOnRestart"}
"""Defects judged by the tests below (energy delivered, charging resumed) rather than by a condition."""


def test_every_defect_has_a_condition() -> None:
    assert set(CATALOGUE) == set(CAUGHT_BY) == set(CONDITIONS) | EXTRA


@pytest.mark.parametrize("defect", sorted(CONDITIONS))
def test_condition_catches_its_defect(defect: str) -> None:
    verdict = CONDITIONS[defect](defect)
    assert not verdict.passed, (defect, CAUGHT_BY[defect], verdict.why())


@pytest.mark.parametrize("condition", sorted(EVERY_CONDITION))
@pytest.mark.parametrize("controller", [*REFERENCES, *sorted(LEGAL)])
def test_references_and_legal_variants_pass_every_condition(condition: str, controller: str) -> None:
    verdict = EVERY_CONDITION[condition](controller)
    assert verdict.passed, (condition, controller, verdict.why())


def test_integral_feedback_oscillates_but_passes_with_a_slow_gain_and_an_honest_meter() -> None:
    assert step("OscillatingIntegral").report.episodes >= 3
    honest = judge(site(), build("TrustsDriftingMeter", site()))
    assert honest.report.passed, honest.why()
    assert meter_low("TrustsDriftingMeter").report.max_overshoot_pct > 10.0


def test_aiming_inside_the_band_fails_only_the_sustained_excess() -> None:
    report = many("AimsAtBandEdge").report
    assert report.steady_pass and report.hard_pass and not report.sustained_pass, report.to_dict()


@pytest.mark.parametrize("name", [*REFERENCES, "StarvesOnePort"])
def test_a_session_on_port_0_with_headroom_to_spare_gets_energy(name: str) -> None:
    scenario = site((0.0, 5.0))  # two EVs, 64 A of the 69 A headroom: both fit
    run = simulate(scenario, build(name, scenario))
    assert (run.delivered_kwh[run.session_ids.index("s0")] > 0.5) == (name != "StarvesOnePort"), run.delivered_kwh


@pytest.mark.parametrize("name", [*REFERENCES, "NoResumeAfterOutage"])
def test_charging_resumes_after_a_stale_meter(name: str) -> None:
    run = simulate(site(), build(name, site()), STALE)
    assert (charging_after(run, 240.0) > 20.0) == (name != "NoResumeAfterOutage"), charging_after(run, 240.0)


@pytest.mark.parametrize("name", [*REFERENCES, "ForgetsSessionsOnRestart"])
def test_charging_resumes_after_a_controller_restart(name: str) -> None:
    scenario = site()
    run = simulate(scenario, Restarted(lambda: build(name, scenario), at=120.0))
    assert (charging_after(run, 150.0) > 20.0) == (name != "ForgetsSessionsOnRestart"), charging_after(run, 150.0)
