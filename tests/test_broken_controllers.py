"""Every deliberately broken controller fails the condition that targets it, and the reference parallel,
sequential and adaptive controllers pass the same condition (in the in-memory loop, on small synthetic
sites: 4 ports, a few minutes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pytest

from hil.compliance.check import SETTLING_S, ComplianceReport, Event, check
from hil.controllers.observation import Controller, Decision, Observation
from hil.controllers.reference import CONTROLLERS
from hil.site.scenarios import GridEvent, Scenario, Session, Tariff
from hil.site.simulation import RunResult, SimulationConfig, simulate
from broken_controllers import CATALOGUE, CAUGHT_BY

REFERENCES = ("parallel", "sequential", "adaptive")
LIMIT_A = 80.0
UNMANAGED_A = 8.0
DURATION_S = 300.0
FLAT = Tariff("flat", "USD", ((0.0, 0.2),), 0.0)


def site(arrivals: Sequence[float] = (0.0, 5.0, 10.0, 15.0), *, phases: Sequence[tuple[int, ...]] | None = None,
         events: tuple[GridEvent, ...] = (), duration: float = DURATION_S) -> Scenario:
    """Four 32 A ports under an 80 A per-phase limit with 8 A of building load; one long session per port
    arriving at ``arrivals`` [s] (three-phase unless ``phases`` says otherwise)."""
    drawn = phases or [(0, 1, 2)] * len(arrivals)
    sessions = tuple(Session(f"s{k}", k, a, duration, 100.0, 32.0, drawn[k]) for k, a in enumerate(arrivals))
    return Scenario(name="broken-site", seed=0, ports=4, phase_voltage=230.0, evse_max_a=32.0, limit_a=LIMIT_A,
                    breaker_a=LIMIT_A, unmanaged_a=UNMANAGED_A, tariff=FLAT, start_h=8.0, duration=duration,
                    sessions=sessions, events=events)


def judge(run: RunResult, extra: Sequence[Event] = ()) -> ComplianceReport:
    """The load-limit check of ``run`` with its grid events plus ``extra`` (fault injections)."""
    events = [Event(t, kind, red, 0.0 if kind == "dr_notice" else None) for t, kind, red in run.event_times]
    return check(run.t, run.site_a, run.limit_a, [*events, *extra], settling_s=SETTLING_S.get(run.architecture, 10.0),
                 breaker_a=run.scenario.breaker_a)


def build(name: str, scenario: Scenario) -> Controller:
    return (CONTROLLERS.get(name) or CATALOGUE[name])(scenario)


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
STALE_STEP = site(events=(GridEvent("unmanaged_step", 130.0, fraction=0.3),))
STALE = SimulationConfig(meter_stale=((100.0, 160.0),))
"""F2: the site meter frozen for a minute."""
F6_SITE = site((30.0, 0.0, 0.0, 0.0), phases=[(0, 1, 2), (0, 1, 2), (0, 1, 2), (1,)])


def many(name: str) -> ComplianceReport:
    return judge(simulate(site(), build(name, site())))


def step(name: str) -> ComplianceReport:
    return judge(simulate(STEP, build(name, STEP), SimulationConfig(ev_delay=5.0)))


def meter_low(name: str) -> ComplianceReport:
    run = simulate(site(), build(name, site()), SimulationConfig(meter_gain=0.8, meter_gain_from=100.0))
    return judge(run, [Event(100.0, "meter_fault", 0.0)])


def stale_step(name: str) -> ComplianceReport:
    return judge(simulate(STALE_STEP, build(name, STALE_STEP), SimulationConfig(meter_stale=((100.0, 220.0),))))


def demand_response(name: str) -> ComplianceReport:
    return judge(simulate(DR, build(name, DR)))


def declared_single_phase(name: str) -> ComplianceReport:
    return judge(simulate(F6_SITE, Declared(build(name, F6_SITE), port=0, phases=(0,))))


CONDITIONS: dict[str, Callable[[str], ComplianceReport]] = {
    "IgnoresLimitAboveTwoSessions": many,
    "OscillatingIntegral": step,
    "SlowToReduce": step,
    "TrustsDriftingMeter": meter_low,
    "NoFallbackOnStaleMeter": stale_step,
    "IgnoresDemandResponse": demand_response,
    "TrustsDeclaredPhases": declared_single_phase,
}
"""Load-limit conditions by the defect they target."""


def test_every_defect_has_a_condition() -> None:
    assert set(CATALOGUE) == set(CAUGHT_BY) == set(CONDITIONS) | {"StarvesOnePort", "NoResumeAfterOutage",
                                                                 "ForgetsSessionsOnRestart"}


@pytest.mark.parametrize("defect", sorted(CONDITIONS))
def test_load_limit_condition_catches_its_defect(defect: str) -> None:
    report = CONDITIONS[defect](defect)
    assert not report.passed, (defect, CAUGHT_BY[defect], report.to_dict())


@pytest.mark.parametrize("condition", sorted({c.__name__: c for c in CONDITIONS.values()}))
@pytest.mark.parametrize("reference", REFERENCES)
def test_references_pass_every_load_limit_condition(condition: str, reference: str) -> None:
    report = {c.__name__: c for c in CONDITIONS.values()}[condition](reference)
    assert report.passed, (condition, reference, report.to_dict())


def test_integral_feedback_oscillates_but_passes_with_a_slow_gain_and_an_honest_meter() -> None:
    assert step("OscillatingIntegral").episodes >= 3
    honest = judge(simulate(site(), build("TrustsDriftingMeter", site())))
    assert honest.passed, honest.to_dict()
    assert meter_low("TrustsDriftingMeter").max_overshoot_pct > 10.0


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
