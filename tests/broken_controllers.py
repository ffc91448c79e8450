"""A catalogue of deliberately broken site controllers: the load-limit and fault-recovery suites must catch
every one of them (and pass every reference controller).

Each class implements the ``Controller`` protocol with one seeded defect; most wrap the reference
``Parallel`` (equal share behind the safety shell) and change one thing about what it sees or what it sends.
Its docstring states the defect and the condition that catches it; ``CAUGHT_BY`` says the same per defect
name, ``CATALOGUE`` builds each one for a scenario (like ``hil.controllers.reference.CONTROLLERS``).

Units: seconds, A per phase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from hil.controllers.allocation import water_fill
from hil.controllers.observation import STALE_METER_S, Array, Controller, Decision, Observation
from hil.controllers.reference import Parallel, declared_unmanaged_a
from hil.site.scenarios import Scenario


def _parallel(scenario: Scenario) -> Parallel:
    return Parallel(unmanaged_max_a=declared_unmanaged_a(scenario))


@dataclass
class IgnoresLimitAboveTwoSessions:
    """Defect: with more than two sessions wanting energy it gives every EV its maximum (an allocation
    table that stops at two). Caught by any site where three or more EVs together exceed the limit: the
    site current stays above the band (steady and hard criteria fail)."""

    inner: Controller
    name: str = "ignores-limit-above-two"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        wanting = obs.connected & (obs.remaining_kwh > 0)
        if np.count_nonzero(wanting) > 2:
            return Decision(np.where(wanting, obs.ev_max_a, 0.0))
        return self.inner.decide(obs)


@dataclass
class SiteMeterIntegral:
    """Integral feedback on the site meter, no plausibility check and no shell: the total per-phase set
    point ``S`` moves by ``k_i x (L - I_site) x dt`` and is shared by water-filling (no 6 A floor). The
    3.2 sanity table's feedback controller; the subclasses seed its two defects."""

    k_i: float
    """Integral gain [1/s]."""
    name: str
    architecture: str
    _total: float = field(default=0.0, init=False)
    """The integrated total set point per phase [A]."""
    _last: float | None = field(default=None, init=False)

    def decide(self, obs: Observation) -> Decision:
        dt = 0.0 if self._last is None else obs.time - self._last
        self._last = obs.time
        caps = np.where(obs.connected & (obs.remaining_kwh > 0), obs.ev_max_a, 0.0)
        error = float(np.min(obs.limit_a - obs.site_a))
        ceiling = float((obs.phases.T @ caps).max())
        self._total = min(max(self._total + self.k_i * error * dt, 0.0), ceiling)
        return Decision(water_fill(caps, obs.phases, np.full(3, self._total)))


@dataclass
class OscillatingIntegral(SiteMeterIntegral):
    """Defect: integral feedback on the site meter with too high a gain (k_i = 0.5 /s) for EVs that react
    in 5 s: it oscillates around the limit. Caught by a limit step with a 5 s EV delay under the local
    settling time (10 s): several violation episodes (the 3.2 table: FAIL, oscillation)."""

    k_i: float = 0.5
    name: str = "oscillating-integral"
    architecture: str = "local"


@dataclass
class TrustsDriftingMeter(SiteMeterIntegral):
    """Defect: slow integral feedback (k_i = 0.05 /s, judged in the 60 s class, where it passes with an
    honest meter) that trusts the site meter without a plausibility check. Caught by F1, a site meter
    reading 20 % low: it converges to L / 0.8, a persistent +22-25 % overshoot (steady and hard fail)."""

    k_i: float = 0.05
    name: str = "trusts-drifting-meter"
    architecture: str = "cloud"


@dataclass
class NoFallbackOnStaleMeter:
    """Defect: keeps using the last site reading however old (it never sees the meter's age), so it has no
    stale-meter fallback. Caught by F2 with an unmanaged-load step while the meter is frozen: it keeps
    allocating for the old building load and the site stays above the band (steady fail)."""

    inner: Controller
    name: str = "no-fallback-on-stale-meter"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        return self.inner.decide(replace(obs, site_age_s=0.0))


@dataclass
class StarvesOnePort:
    """Defect: never gives port 0 any current (a port missing from its table). Caught by any session on
    port 0 with headroom to spare: it gets no energy (min delivered share 0 %) while the reference
    controllers give every session some."""

    inner: Controller
    name: str = "starves-one-port"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        ev_max = obs.ev_max_a.copy()
        ev_max[0] = 0.0
        return self.inner.decide(replace(obs, ev_max_a=ev_max))


@dataclass
class IgnoresDemandResponse:
    """Defect: allocates under the breaker/contract limit only, never under ``obs.limits['dr']``. Caught
    by a demand-response event: the site stays above the reduced limit for the whole event (steady fail)."""

    inner: Controller
    name: str = "ignores-demand-response"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        return self.inner.decide(replace(obs, limits={k: v for k, v in obs.limits.items() if k != "dr"}))


@dataclass
class SlowToReduce:
    """Defect: applies a decrease only once it has been wanted for 30 s (increases at once). Caught by a
    limit step down under the local settling time (10 s): the site is above the new band for about 30 s
    (steady fail)."""

    inner: Controller
    delay_s: float = 30.0
    name: str = "slow-to-reduce"
    architecture: str = "local"
    _sent: Array | None = field(default=None, init=False)
    _wanted_since: Array | None = field(default=None, init=False)
    """Per port: since when a decrease has been wanted [s] (nan: none)."""

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        new = np.asarray(decision.setpoints_a, dtype=float)
        if self._sent is None or self._wanted_since is None or len(self._sent) != len(new):
            self._sent, self._wanted_since = new.copy(), np.full(len(new), np.nan)
        lower = new < self._sent
        self._wanted_since = np.where(lower, np.fmin(self._wanted_since, obs.time), np.nan)
        due = lower & (obs.time - self._wanted_since >= self.delay_s)
        self._sent = np.where(~lower | due, new, self._sent)
        self._wanted_since[due] = np.nan
        return Decision(self._sent.copy(), decision.fallback)


@dataclass
class TrustsDeclaredPhases:
    """Defect: takes each EV's phases from the first observation of its session (what the EV declares, as
    the rig loop reports them while the EV draws nothing) and never from the port meter afterwards.
    Caught by F6, a three-phase EV declared single-phase on L1 plugging in while the others charge: the
    controller counts it on L1 only and gives L2 and L3 to the other ports, which overload them until the
    shell's site-meter estimate books the uncounted current as unmanaged load (about 9 s above the band,
    peak above 1.13 x the breaker: steady and hard fail). The reference shell budgets a port on all three
    phases until its meter has shown which it draws.

    (The opposite mis-declaration, a single-phase EV counted on all three phases, over-counts and cannot
    overload a phase: it only wastes headroom.)"""

    inner: Controller
    name: str = "trusts-declared-phases"
    architecture: str = "local"
    _phases: Array | None = field(default=None, init=False)
    _arrival: Array | None = field(default=None, init=False)

    def decide(self, obs: Observation) -> Decision:
        if self._phases is None or self._arrival is None or self._phases.shape != obs.phases.shape:
            self._phases, self._arrival = obs.phases.copy(), np.full(len(obs.connected), np.nan)
        new = obs.connected & (obs.arrival != self._arrival)
        self._phases[new] = obs.phases[new]
        self._arrival = np.where(obs.connected, obs.arrival, np.nan)
        return self.inner.decide(replace(obs, phases=self._phases.copy()))


@dataclass
class NoResumeAfterOutage:
    """Defect: once the site meter has gone stale it stops charging for good, even after the meter is
    back. Caught by F2 with recovery: after the meter returns (and the 60 s of healthy data), the site
    delivers nothing while the reference controllers charge again."""

    inner: Controller
    name: str = "no-resume-after-outage"
    architecture: str = "local"
    _lost: bool = field(default=False, init=False)

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        self._lost |= obs.site_age_s > STALE_METER_S
        if self._lost:
            return Decision(np.zeros(len(obs.connected)), True)
        return decision


@dataclass
class ForgetsSessionsOnRestart:
    """Defect: charges only the sessions it saw plug in; sessions that were already connected when it
    started are never given current. Caught by a controller restart with sessions in progress (the rig's
    ``restart_controller``): after the restart the site delivers nothing to them."""

    inner: Controller
    name: str = "forgets-sessions-on-restart"
    architecture: str = "local"
    _known: Array | None = field(default=None, init=False)
    """Per port: the arrival time of the session it saw arrive (nan: none)."""
    _seen: Array | None = field(default=None, init=False)
    """Per port: connected at the previous call."""

    def decide(self, obs: Observation) -> Decision:
        n = len(obs.connected)
        if self._known is None or self._seen is None or len(self._known) != n:
            self._known, self._seen = np.full(n, np.nan), obs.connected.copy()  # present at start: not seen arriving
        arrived = obs.connected & ~self._seen.astype(bool)
        self._known = np.where(arrived, obs.arrival, np.where(obs.connected, self._known, np.nan))
        self._seen = obs.connected.copy()
        ev_max = np.where(np.isnan(self._known), 0.0, obs.ev_max_a)
        return self.inner.decide(replace(obs, ev_max_a=ev_max))


CATALOGUE: dict[str, Callable[[Scenario], Controller]] = {
    "IgnoresLimitAboveTwoSessions": lambda s: IgnoresLimitAboveTwoSessions(_parallel(s)),
    "OscillatingIntegral": lambda s: OscillatingIntegral(),
    "TrustsDriftingMeter": lambda s: TrustsDriftingMeter(),
    "NoFallbackOnStaleMeter": lambda s: NoFallbackOnStaleMeter(_parallel(s)),
    "StarvesOnePort": lambda s: StarvesOnePort(_parallel(s)),
    "IgnoresDemandResponse": lambda s: IgnoresDemandResponse(_parallel(s)),
    "SlowToReduce": lambda s: SlowToReduce(_parallel(s)),
    "TrustsDeclaredPhases": lambda s: TrustsDeclaredPhases(_parallel(s)),
    "NoResumeAfterOutage": lambda s: NoResumeAfterOutage(_parallel(s)),
    "ForgetsSessionsOnRestart": lambda s: ForgetsSessionsOnRestart(_parallel(s)),
}
"""Every broken controller by defect name, built for a scenario."""

CAUGHT_BY: dict[str, tuple[str, ...]] = {
    "IgnoresLimitAboveTwoSessions": ("load_limit/test_load_limit.py::test_site_stays_inside_the_limit[limit_step_down]",),
    "OscillatingIntegral": ("fault_recovery/test_faults.py::test_f4_evs_that_follow_late[5s]",),
    "TrustsDriftingMeter": ("fault_recovery/test_faults.py::test_f1_site_meter_reads_20_percent_low",),
    "NoFallbackOnStaleMeter": ("fault_recovery/test_faults.py::test_f2_site_meter_stale_or_gone[gone-2min]",),
    "StarvesOnePort": ("load_limit/test_load_limit.py::test_arrivals_at_full_headroom",),
    "IgnoresDemandResponse": ("load_limit/test_load_limit.py::test_site_stays_inside_the_limit[demand_response_with_notice]",),
    "SlowToReduce": ("load_limit/test_load_limit.py::test_site_stays_inside_the_limit[limit_step_down]",),
    "TrustsDeclaredPhases": ("fault_recovery/test_faults.py::test_f6_phase_misdeclaration[3ph-declared-1ph]",),
    "NoResumeAfterOutage": ("fault_recovery/test_faults.py::test_f2_site_meter_stale_or_gone[stale-10s]",),
    "ForgetsSessionsOnRestart": ("fault_recovery/test_faults.py::test_controller_restart_mid_session",),
}
"""The suite tests (relative to ``suites/``, ``[...]``: the test's other parameter ids) expected to catch
each defect: ``hil selftest`` checks them, and shows every other test that catches it too."""
