"""Legal site controllers that allocate, order or ramp differently from evhil's reference controllers: the
load-limit and fault-recovery suites must pass every one of them, because they judge requirements (the
limit, the minimum current, service, fault handling), not evhil's own design choices.

Most run behind the reference safety shell (``hil.controllers.observation.Headroom``: headroom, site-meter
fallback, phases learned from metering, ports not following budgeted at their draw) and differ in what they
do with its budget (``OnShell.allocate``); two wrap ``Parallel`` and change what it is told or what it sends.
Every one on the shell sends decreases first: an increase waits until every lowered port draws at most its
new set point (plus 1 A), at most ``HOLD_S``.

``CATALOGUE`` builds each one for a scenario, by name (``--controller tests/legal_controllers.py:NAME``).

Units: seconds, A per phase, kWh, V.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from hil.controllers.allocation import MIN_CURRENT_A, admit, equal_share, quantise
from hil.controllers.observation import (
    IMPLAUSIBLE_S, MARGIN_A, MARGIN_SHARE, NOT_FOLLOWING_S, STALE_METER_S, Array, Budget, Controller, Decision,
    Headroom, Observation,
)
from hil.controllers.reference import Parallel, declared_unmanaged_a
from hil.site.scenarios import Scenario

FOLLOW_A = 1.0
"""A lowered port counts as having followed once it draws at most its new set point plus this [A]."""
HOLD_S = NOT_FOLLOWING_S + 5.0
"""The longest an increase waits for lowered ports to follow [s]: longer than the shell takes to budget a port
that does not follow at its draw, so that a raise never spends what such a port still draws."""


@dataclass
class OnShell:
    """The reference safety shell around an allocation of its budget (``allocate``), with decreases sent
    first."""

    unmanaged_max_a: float = 0.0
    _shell: Headroom = field(init=False)
    _sent: Array | None = field(default=None, init=False)
    _waiting_since: float | None = field(default=None, init=False)
    """Since when an increase has waited for lowered ports [s] (None: none waits)."""

    def __post_init__(self) -> None:
        self._shell = Headroom(self.unmanaged_max_a)

    def decide(self, obs: Observation) -> Decision:
        return self._shell.issue(self._decreases_first(self.allocate(self._shell(obs), obs), obs))

    def allocate(self, budget: Budget, obs: Observation) -> Array:
        raise NotImplementedError

    def _decreases_first(self, target: Array, obs: Observation) -> Array:
        """``target`` [A per phase] with its decreases at once and its increases once every port draws at
        most what it is now told (plus ``FOLLOW_A``), or after ``HOLD_S``."""
        if self._sent is None or len(self._sent) != len(target):
            self._sent = np.zeros(len(target))
        out = np.minimum(target, self._sent)
        if (target > self._sent).any():
            lagging = bool((obs.connected & (obs.measured_a > out + FOLLOW_A)).any())
            self._waiting_since = obs.time if self._waiting_since is None else self._waiting_since
            if not lagging or obs.time - self._waiting_since >= HOLD_S:
                out, self._waiting_since = target, None
        else:
            self._waiting_since = None
        self._sent = out
        return out


def _quantised(x: float, cap: float) -> float:
    """``x`` [A] through the 6 A quantiser, at most ``cap``."""
    return float(quantise(np.array([x]), np.array([cap]))[0])


@dataclass
class LeastLaxityFirst(OnShell):
    """Greedy least-laxity-first (ACN's LLF): ports in order of laxity (time left less the time its energy
    takes at its maximum) each get as much as the headroom on their phases allows, 0 below 6 A. The order is
    kept for ``reorder_s`` (and renewed when a session begins or ends), so two ports do not swap every
    second."""

    reorder_s: float = 60.0
    name: str = "least-laxity-first"
    architecture: str = "local"
    _order: Array | None = field(default=None, init=False)
    _ordered: tuple[float, bytes] | None = field(default=None, init=False)

    def allocate(self, budget: Budget, obs: Observation) -> Array:
        caps, phases = budget.caps_a, budget.phases
        sessions = (caps > 0).tobytes()
        if self._ordered is None or self._ordered[1] != sessions or obs.time - self._ordered[0] >= self.reorder_s:
            drawn = np.maximum(obs.phases.sum(axis=1), 1.0) * obs.phase_voltage
            needed_s = obs.remaining_kwh * 3.6e6 / np.maximum(caps * drawn, 1e-9)
            laxity = np.where(caps > 0, obs.departure - obs.time - needed_s, np.inf)
            self._order, self._ordered = np.argsort(laxity, kind="stable"), (obs.time, sessions)
        assert self._order is not None
        left = budget.headroom_a.copy()
        rates = np.zeros(len(caps))
        for i in self._order:
            used = phases[i] > 0
            if caps[i] <= 0 or not used.any():
                continue
            rates[i] = _quantised(float(left[used].min()), float(caps[i]))
            left -= phases[i] * rates[i]
        return rates


@dataclass
class StrictPriorityClasses(OnShell):
    """Strict priority classes: class 0 (the first ``first_class`` ports, e.g. a fleet's duty vehicles) is
    filled by equal share with the 6 A floor, then class 1 from what is left."""

    first_class: int = 2
    name: str = "strict-priority-classes"
    architecture: str = "local"

    def allocate(self, budget: Budget, obs: Observation) -> Array:
        left = budget.headroom_a.copy()
        rates = np.zeros(len(budget.caps_a))
        first = np.arange(len(rates)) < self.first_class
        for members in (first, ~first):
            share = equal_share(np.where(members, budget.caps_a, 0.0), budget.phases, left)
            rates += share
            left = np.maximum(left - budget.phases.T @ share, 0.0)
        return rates


@dataclass
class RoundRobinSlots(OnShell):
    """Round robin with a short slot: only as many sessions as can get ``share_a`` each are served at once
    (at least one, at 6 A or more), by equal share; the turn passes to the next ones every ``slot_s``."""

    slot_s: float = 30.0
    share_a: float = 12.0
    name: str = "round-robin-slots"
    architecture: str = "local"
    _pointer: int = field(default=0, init=False)
    _turned: float = field(default=0.0, init=False)

    def allocate(self, budget: Budget, obs: Observation) -> Array:
        caps, phases, headroom = budget.caps_a, budget.phases, budget.headroom_a
        n = len(caps)
        order = np.roll(np.arange(n), -self._pointer)
        served = admit(order, phases, headroom, caps, self.share_a)
        if not served.any():
            served = admit(order, phases, headroom, caps, MIN_CURRENT_A)
        wanting = int(np.count_nonzero(caps >= MIN_CURRENT_A))
        if obs.time - self._turned >= self.slot_s:
            if 0 < int(served.sum()) < wanting:
                self._pointer = (self._pointer + int(np.nonzero(served[order])[0][-1]) + 1) % n
            self._turned = obs.time
        return equal_share(np.where(served, caps, 0.0), phases, headroom)


@dataclass
class EverestSlices(OnShell):
    """EVerest-like energy trading: in port order each port first buys the 6 A minimum or nothing, then
    every port that can still rise buys one ``slice_a`` per round while each of its phases has headroom
    (at most ``rounds`` rounds): max-min fair in 0.5 A steps."""

    slice_a: float = 0.5
    rounds: int = 100
    name: str = "everest-slices"
    architecture: str = "local"

    def allocate(self, budget: Budget, obs: Observation) -> Array:
        caps, phases = budget.caps_a, budget.phases
        left = budget.headroom_a.copy()
        rates = np.zeros(len(caps))
        for i in np.nonzero(caps >= MIN_CURRENT_A)[0]:
            used = phases[i] > 0
            if used.any() and (left[used] >= MIN_CURRENT_A).all():
                rates[i], left = MIN_CURRENT_A, left - MIN_CURRENT_A * phases[i]
        for _ in range(self.rounds):
            bought = False
            for i in np.nonzero(rates > 0)[0]:
                used = phases[i] > 0
                if rates[i] + self.slice_a <= caps[i] + 1e-9 and (left[used] >= self.slice_a - 1e-9).all():
                    rates[i], left, bought = rates[i] + self.slice_a, left - self.slice_a * phases[i], True
            if not bought:
                break
        return rates


@dataclass
class OpenEmsRed(OnShell):
    """OpenEMS-like states: RED on any site-meter error (no fresh reading for ``STALE_METER_S``, or the
    port meters adding up to more than the site meter plus the margin for ``IMPLAUSIBLE_S``): every port
    off until the meter has been healthy for ``red_hold_s``; otherwise (GREEN) equal share with the 6 A
    floor."""

    red_hold_s: float = 30.0
    name: str = "openems-red"
    architecture: str = "local"
    _low_since: float | None = field(default=None, init=False)
    _healthy_since: float | None = field(default=None, init=False)
    _red: bool = field(default=False, init=False)

    def allocate(self, budget: Budget, obs: Observation) -> Array:
        limit = obs.limit_a
        low = bool((obs.phases.T @ obs.measured_a > obs.site_a + MARGIN_SHARE * limit + MARGIN_A).any())
        self._low_since = (obs.time if self._low_since is None else self._low_since) if low else None
        error = obs.site_age_s > STALE_METER_S or (self._low_since is not None
                                                   and obs.time - self._low_since > IMPLAUSIBLE_S)
        if error:
            self._red, self._healthy_since = True, None
        elif self._red:
            self._healthy_since = obs.time if self._healthy_since is None else self._healthy_since
            self._red = obs.time - self._healthy_since < self.red_hold_s
        if self._red:
            return np.zeros(len(budget.caps_a))
        return equal_share(budget.caps_a, budget.phases, budget.headroom_a)


@dataclass
class SlowRamp:
    """``inner`` with increases ramped at ``ramp_a_per_s`` per port (a paused port starts at 6 A at once)
    and decreases at once."""

    inner: Controller
    ramp_a_per_s: float = 0.3
    name: str = "slow-ramp"
    architecture: str = "local"
    _sent: Array | None = field(default=None, init=False)
    _last: float = field(default=0.0, init=False)

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        target = np.asarray(decision.setpoints_a, dtype=float)
        if self._sent is None or len(self._sent) != len(target):
            self._sent = np.zeros(len(target))
        step = self.ramp_a_per_s * max(obs.time - self._last, 0.0)
        self._last = obs.time
        start = np.where(self._sent < MIN_CURRENT_A, np.minimum(target, MIN_CURRENT_A), self._sent + step)
        self._sent = np.where(target > self._sent, np.minimum(target, start), target)
        return Decision(self._sent.copy(), decision.fallback)


@dataclass
class LargeMargin:
    """``inner`` told a limit of ``L x (1 - share) - extra_a``: a 10 % + 3 A safety margin on top of the
    shell's own."""

    inner: Controller
    share: float = 0.10
    extra_a: float = 3.0
    name: str = "large-margin"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        limit = np.maximum(obs.limit_a * (1.0 - self.share) - self.extra_a, 0.0)
        return self.inner.decide(replace(obs, limits={"with-margin": limit}))


def _parallel(scenario: Scenario) -> Parallel:
    return Parallel(unmanaged_max_a=declared_unmanaged_a(scenario))


CATALOGUE: dict[str, Callable[[Scenario], Controller]] = {
    "LeastLaxityFirst": lambda s: LeastLaxityFirst(declared_unmanaged_a(s)),
    "StrictPriorityClasses": lambda s: StrictPriorityClasses(declared_unmanaged_a(s)),
    "RoundRobinSlots": lambda s: RoundRobinSlots(declared_unmanaged_a(s)),
    "EverestSlices": lambda s: EverestSlices(declared_unmanaged_a(s)),
    "OpenEmsRed": lambda s: OpenEmsRed(declared_unmanaged_a(s)),
    "SlowRamp": lambda s: SlowRamp(_parallel(s)),
    "LargeMargin": lambda s: LargeMargin(_parallel(s)),
}
"""Every legal variant by name, built for a scenario (each falls back to the scenario's declared worst-case
unmanaged load, like the reference controllers)."""

_LOAD_LIMIT = "load_limit/test_load_limit.py::test_site_stays_inside_the_limit"
_FAULTS = "fault_recovery/test_faults.py"

LEGAL: dict[str, tuple[str, ...]] = {
    "LeastLaxityFirst": (f"{_LOAD_LIMIT}[arrivals]", f"{_LOAD_LIMIT}[short_sessions]",
                         f"{_LOAD_LIMIT}[single_phase_imbalance]"),
    "StrictPriorityClasses": (f"{_LOAD_LIMIT}[scarcity]", f"{_LOAD_LIMIT}[arrivals]",
                              f"{_LOAD_LIMIT}[single_phase_imbalance]"),
    "RoundRobinSlots": (f"{_LOAD_LIMIT}[scarcity]", f"{_LOAD_LIMIT}[short_sessions]", f"{_LOAD_LIMIT}[arrivals]"),
    "EverestSlices": (f"{_LOAD_LIMIT}[scarcity]", f"{_LOAD_LIMIT}[single_phase_imbalance]"),
    "OpenEmsRed": (f"{_FAULTS}::test_f1_site_meter_reads_20_percent_low",
                   f"{_FAULTS}::test_f2_site_meter_stale_or_gone"),
    "SlowRamp": (f"{_LOAD_LIMIT}[limit_step_up]", f"{_LOAD_LIMIT}[short_sessions]", f"{_LOAD_LIMIT}[arrivals]"),
    "LargeMargin": (f"{_LOAD_LIMIT}[scarcity]", f"{_FAULTS}::test_f2_site_meter_stale_or_gone"),
}
"""The tests each variant's difference touches most (``hil selftest --quick`` runs only these)."""
