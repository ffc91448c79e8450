"""A catalogue of deliberately broken site controllers: the load-limit and fault-recovery suites must catch
every one of them (and pass every reference controller).

Each class implements the ``Controller`` protocol with one seeded defect; most wrap a reference controller
(``Parallel``, equal share behind the safety shell, or ``Sequential``) and change one thing about what it
sees (``Distorts``) or what it sends. Its docstring states the defect and the requirement that catches it;
``CAUGHT_BY`` names the suite tests expected to catch it, ``CATALOGUE`` builds each one for a scenario (like
``hil.controllers.reference.CONTROLLERS``).

The requirements, and the defects each one is there to catch:

- the limit after a step, demand response with and without notice, an unmanaged-load step, per phase
  (compliance definition, steady-state criterion): ``IgnoresLimitAboveTwoSessions``, ``SlowToReduce``,
  ``LatchesLimitAtStart``, ``AllocatesOnlyOnSessionChange``, ``IgnoresDemandResponse``,
  ``ReducesOnlyWhenDemandResponseStarts``, ``CombinesLimitsWithMax``, ``BudgetsCommissionedBuildingLoad``,
  ``SmoothsBuildingLoadRises``, ``BalancesPowerNotPhases``;
- hard safety (1.13 x the breaker, or 60 s above the band): ``ChecksEachPortAgainstTheLimit``;
- transient (no rise above the old band, no more overshoot than a linear ramp): ``IncreasesBeforeDecreases``,
  ``DebouncesLimitDrops``, ``OscillatingIntegral``;
- sustained excess inside the band (20 s steady mean above ``L x 1.02``): ``AimsAtBandEdge``,
  ``FillsToTheBand``;
- minimum current (a set point is 0 or at least 6 A): ``SharesWithoutMinimum``, ``TrickleToWaitingSessions``,
  ``PausesWithOneAmp``;
- service (no session waits while the site idles with room for it): ``StarvesOnePort``,
  ``AdmitsArrivalsOnlyAtRotation``, ``HaltsAfterSessionEnds``, ``SequentialAdvancesOnlyOnUnplug``,
  ``PausesAllWhenShareBelowMinimum``;
- faults: F1 ``TrustsDriftingMeter``, ``HeadroomFromSiteMeterUnchecked``; F2 ``NoFallbackOnStaleMeter``,
  ``StaleMeterTimeoutOneMinute``, ``UnsafeFallbackIgnoresBuildingLoad``, ``NoResumeAfterOutage``; F4
  ``AssumesEvsFollowPilot``; F6 ``TrustsDeclaredPhases``; restart ``ForgetsSessionsOnRestart``,
  ``AdoptsRunningSessionsAtMaximum``.

Units: seconds, A per phase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from hil.controllers.allocation import RESOLUTION_A, equal_share, quantise, water_fill
from hil.controllers.observation import (
    MARGIN_A, MARGIN_SHARE, STALE_METER_S, Array, Budget, Controller, Decision, Headroom, Observation,
)
from hil.controllers.reference import Parallel, Sequential, declared_unmanaged_a
from hil.site.scenarios import Scenario


def _parallel(scenario: Scenario, unmanaged_max_a: float | None = None) -> Parallel:
    """The reference parallel controller, falling back to ``unmanaged_max_a`` [A] (default: the declared
    worst case)."""
    return Parallel(unmanaged_max_a=declared_unmanaged_a(scenario) if unmanaged_max_a is None else unmanaged_max_a)


def _sequential(scenario: Scenario) -> Sequential:
    return Sequential(unmanaged_max_a=declared_unmanaged_a(scenario))


@dataclass
class Distorts:
    """Runs ``inner`` on what ``seen`` makes of the observation: the defect is in ``seen``."""

    inner: Controller

    def decide(self, obs: Observation) -> Decision:
        return self.inner.decide(self.seen(obs))

    def seen(self, obs: Observation) -> Observation:
        raise NotImplementedError


@dataclass
class Allocates:
    """Behind the reference safety shell (headroom, fallback, phases, following), with its own ``share`` of
    the budget: the defect is in ``share``."""

    unmanaged_max_a: float = 0.0
    _shell: Headroom = field(init=False)

    def __post_init__(self) -> None:
        self._shell = Headroom(self.unmanaged_max_a)

    def decide(self, obs: Observation) -> Decision:
        return self._shell.issue(self.share(self._shell(obs), obs))

    def share(self, budget: Budget, obs: Observation) -> Array:
        raise NotImplementedError


# -- the limit ------------------------------------------------------------------------------------------------
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
class LatchesLimitAtStart(Distorts):
    """Defect: reads the site limit once, at start-up (the commissioning value), and never again. Caught by
    a limit step down: the site stays at the old limit, above the new band (steady fail)."""

    name: str = "latches-limit-at-start"
    architecture: str = "local"
    _limits: dict[str, Array] | None = field(default=None, init=False)

    def seen(self, obs: Observation) -> Observation:
        if self._limits is None:
            self._limits = dict(obs.limits)
        return replace(obs, limits=self._limits)


@dataclass
class AllocatesOnlyOnSessionChange:
    """Defect: event-driven only: it allocates when a session begins, ends or is satisfied, and keeps its
    last set points otherwise (no periodic headroom check, so a lower headroom waits for the next session
    change). Caught by an unmanaged-load step (and a limit step or demand response) with no session change
    after it: the site stays above the band (steady fail)."""

    inner: Controller
    name: str = "allocates-only-on-session-change"
    architecture: str = "local"
    _key: bytes | None = field(default=None, init=False)
    _last: Decision | None = field(default=None, init=False)

    def decide(self, obs: Observation) -> Decision:
        key = obs.connected.tobytes() + obs.arrival.tobytes() + (obs.remaining_kwh > 0).tobytes()
        if key != self._key or self._last is None:
            self._key, self._last = key, self.inner.decide(obs)
        return self._last


@dataclass
class IgnoresDemandResponse(Distorts):
    """Defect: allocates under the breaker/contract limit only, never under ``obs.limits['dr']``. Caught
    by a demand-response event: the site stays above the reduced limit for the whole event (steady fail)."""

    name: str = "ignores-demand-response"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        return replace(obs, limits={k: v for k, v in obs.limits.items() if k != "dr"})


@dataclass
class ReducesOnlyWhenDemandResponseStarts(Distorts):
    """Defect: takes an announced demand-response limit as a schedule and applies it only from the event's
    start (``spans``: the events' start and end [s]), so the EVs are still reducing when it begins. Caught
    by demand response with notice, whose settling time is 0 s: above the reduced band at its start
    (steady fail). Without notice it behaves correctly."""

    spans: tuple[tuple[float, float], ...] = ()
    name: str = "reduces-only-when-dr-starts"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        if any(start <= obs.time < end for start, end in self.spans):
            return obs
        return replace(obs, limits={k: v for k, v in obs.limits.items() if k != "dr"})


@dataclass
class CombinesLimitsWithMax(Distorts):
    """Defect: combines its limit sources (breaker, demand response, ...) with the maximum instead of the
    minimum, so a lower source never binds. Caught by demand response without notice: the site stays above
    the reduced band for the whole event (steady fail)."""

    name: str = "combines-limits-with-max"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        return replace(obs, limits={"combined": np.max(np.stack(list(obs.limits.values())), axis=0)})


@dataclass
class BudgetsCommissionedBuildingLoad(Distorts):
    """Defect: static load management: it budgets the building load declared at commissioning
    (``base_a``) instead of measuring it, reading the site meter only for its age. Caught by an
    unmanaged-load step: the building draws more than declared and the site stays above the band (steady
    fail)."""

    base_a: float = 0.0
    name: str = "budgets-commissioned-building-load"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        return replace(obs, site_a=obs.phases.T @ obs.measured_a + self.base_a)


@dataclass
class SmoothsBuildingLoadRises(Distorts):
    """Defect: filters the measured building load (site meter less the port meters) with a 60 s average,
    rises included (the reference counts a rise at once and smooths only falls). Caught by an
    unmanaged-load step: the EVs give way over a minute instead of within the settling time (steady fail)."""

    tau_s: float = 60.0
    name: str = "smooths-building-load-rises"
    architecture: str = "local"
    _load: Array | None = field(default=None, init=False)
    _last: float | None = field(default=None, init=False)

    def seen(self, obs: Observation) -> Observation:
        ported = obs.phases.T @ obs.measured_a
        load = np.maximum(obs.site_a - ported, 0.0)
        if self._load is None or self._last is None:
            self._load = load
        else:
            self._load = self._load + (1.0 - np.exp(-(obs.time - self._last) / self.tau_s)) * (load - self._load)
        self._last = obs.time
        return replace(obs, site_a=ported + self._load)


@dataclass
class BalancesPowerNotPhases:
    """Defect: kW-based load management: it shares the site's total power (the per-phase limit times three)
    and converts each port's share back to a current on the phases it draws, so three single-phase EVs on
    L1 get three times a three-phase EV's per-phase current. ``inner`` sees every port as three-phase with a
    third of a single-phase EV's current (and the site's mean phase). Caught by per-phase imbalance (and F6,
    single-phase EVs declared three-phase): L1 far above its limit (steady and hard fail)."""

    inner: Controller
    name: str = "balances-power-not-phases"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        drawn = np.maximum(obs.phases.sum(axis=1), 1.0) / 3.0  # a port's power as a share of three phases
        seen = replace(obs, phases=np.where(obs.connected[:, None], 1.0, 0.0), ev_max_a=obs.ev_max_a * drawn,
                       measured_a=obs.measured_a * drawn, site_a=np.full(3, float(obs.site_a.mean())))
        decision = self.inner.decide(seen)
        return Decision(np.minimum(np.asarray(decision.setpoints_a) / drawn, obs.ev_max_a), decision.fallback)


# -- hard safety ------------------------------------------------------------------------------------------------
@dataclass
class ChecksEachPortAgainstTheLimit(Allocates):
    """Defect: checks each port's set point against the site's headroom on its own (a per-port fuse check)
    instead of the ports' sum, so four EVs each get up to the whole headroom. Caught by any site with more
    EVs than the limit carries: 128 A on an 80 A limit with a 100 A breaker is above 1.13 x the breaker
    (hard and steady fail)."""

    name: str = "checks-each-port-against-the-limit"
    architecture: str = "local"

    def share(self, budget: Budget, obs: Observation) -> Array:
        room = np.where(budget.phases > 0, budget.headroom_a[None, :], np.inf).min(axis=1)
        return quantise(np.minimum(budget.caps_a, room))


# -- transient ----------------------------------------------------------------------------------------------------
@dataclass
class SiteMeterIntegral:
    """Integral feedback on the site meter, no plausibility check and no shell: the total per-phase set
    point ``S`` moves by ``k_i x (L - I_site) x dt`` and is shared equally with the 6 A floor. The 3.2
    sanity table's feedback controller; the subclasses seed its two defects."""

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
        return Decision(equal_share(caps, obs.phases, np.full(3, self._total)))


@dataclass
class OscillatingIntegral(SiteMeterIntegral):
    """Defect: integral feedback on the site meter with too high a gain (k_i = 0.5 /s) for EVs that react
    in 5 s: it oscillates around the limit. Caught by a limit step with a 5 s EV delay under the local
    settling time (10 s): several violation episodes (the 3.2 table: FAIL, oscillation)."""

    k_i: float = 0.5
    name: str = "oscillating-integral"
    architecture: str = "local"


@dataclass
class IncreasesBeforeDecreases:
    """Defect: in a re-allocation that raises some ports and lowers others (an arrival), the increases go
    out at once and the decreases ``hold_s`` later (it waits for the raised ports to answer first);
    decreases alone go out at once. Caught by arrivals at full headroom: the new EV draws its share while
    the others still draw theirs, and the site rises above the band (transient criterion: no rise above the
    pre-event band)."""

    inner: Controller
    hold_s: float = 8.0
    name: str = "increases-before-decreases"
    architecture: str = "local"
    _sent: Array | None = field(default=None, init=False)
    _due: Array | None = field(default=None, init=False)
    """Per port: when a held decrease goes out [s] (nan: none held)."""

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        new = np.asarray(decision.setpoints_a, dtype=float)
        if self._sent is None or self._due is None or len(self._sent) != len(new):
            self._sent, self._due = new.copy(), np.full(len(new), np.nan)
        up, down = new > self._sent + RESOLUTION_A, new < self._sent - RESOLUTION_A
        if up.any():
            self._due[down & np.isnan(self._due)] = obs.time + self.hold_s
        self._due[~down] = np.nan
        held = down & (self._due > obs.time)
        self._sent = np.where(held, self._sent, new)
        return Decision(self._sent.copy(), decision.fallback)


@dataclass
class DebouncesLimitDrops(Distorts):
    """Defect: confirms a lower site limit for ``debounce_s`` before acting on it (a filter against
    glitches in the limit signal); rises count at once. Caught by a limit step down: the site comes back
    inside the band within the settling time, but the overshoot integral exceeds a linear ramp from the old
    band (transient criterion)."""

    debounce_s: float = 7.0
    name: str = "debounces-limit-drops"
    architecture: str = "local"
    _limit: Array | None = field(default=None, init=False)
    _since: float | None = field(default=None, init=False)

    def seen(self, obs: Observation) -> Observation:
        limit = obs.limit_a
        if self._limit is None or not (limit < self._limit).any():
            self._limit, self._since = limit, None
        elif self._since is None:
            self._since = obs.time
        if self._since is not None and obs.time - self._since >= self.debounce_s:
            self._limit, self._since = limit, None
        return replace(obs, limits={"confirmed": self._limit})


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


# -- sustained excess ---------------------------------------------------------------------------------------------
@dataclass
class AimsAtBandEdge(Distorts):
    """Defect: aims at the tolerance band less 0.1 A, ``L x 1.02 + 0.9 A``, instead of below the limit (it
    reads the band as the limit): no window leaves the band, but the site's mean stands about 0.02 L +
    0.5 A above its limit. Caught by the sustained-excess criterion: a 20 s steady-state mean above
    ``L x 1.02``."""

    name: str = "aims-at-band-edge"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        # The shell keeps 0.02 L' + 1 A below what it is told: tell it L' with L' - margin = 1.02 L + 0.9.
        aimed = (1.02 * obs.limit_a + 0.9 + MARGIN_A) / (1.0 - MARGIN_SHARE)
        return replace(obs, limits={"aimed": aimed})


@dataclass
class FillsToTheBand(Distorts):
    """Defect: closes a slow loop on the site meter to use every ampere up to ``L x 1.02 + 0.5 A`` (it
    counts the meter's 2 % and half the 1 A tolerance as usable): once the site is near its limit it trims
    the limit its allocation sees by up to 8 A. Caught by the sustained-excess criterion: a 20 s
    steady-state mean above ``L x 1.02``."""

    gain: float = 0.2
    """Trim per ampere of error and second [1/s]."""
    name: str = "fills-to-the-band"
    architecture: str = "local"
    _trim: float = field(default=0.0, init=False)
    _last: float | None = field(default=None, init=False)

    def seen(self, obs: Observation) -> Observation:
        limit = obs.limit_a
        dt = 0.0 if self._last is None else obs.time - self._last
        self._last = obs.time
        if (obs.site_a >= 0.9 * limit).any():  # near the limit: the allocation binds
            error = float(np.min(1.02 * limit + 0.5 - obs.site_a))
            self._trim = float(np.clip(self._trim + self.gain * error * dt, -8.0, 8.0))
        return replace(obs, limits={"trimmed": limit + self._trim})


# -- the minimum current ------------------------------------------------------------------------------------------
@dataclass
class SharesWithoutMinimum(Allocates):
    """Defect: equal share by water-filling without the 6 A floor (the quantiser rounds to 0.1 A only), so
    under scarcity every EV is offered a current no pilot can signal. Caught by scarcity (the limit at 25 %,
    5 A per EV): set points below 6 A (minimum-current rule, IEC 61851-1)."""

    name: str = "shares-without-minimum"
    architecture: str = "local"

    def share(self, budget: Budget, obs: Observation) -> Array:
        return quantise(water_fill(budget.caps_a, budget.phases, budget.headroom_a), minimum=0.0)


@dataclass
class TrickleToWaitingSessions(Allocates):
    """Defect: sequential (the earliest arrival gets what the headroom allows), and every waiting session
    gets a 3 A trickle (to keep its EV awake), reserved off the head's headroom so the limit holds. Caught
    by any site where a session waits (scarcity, a limit step): set points of 3 A (minimum-current rule,
    IEC 61851-1)."""

    trickle_a: float = 3.0
    name: str = "trickle-to-waiting-sessions"
    architecture: str = "local"

    def share(self, budget: Budget, obs: Observation) -> Array:
        caps, phases = budget.caps_a, budget.phases
        rates = np.where(caps > 0, self.trickle_a, 0.0)
        if caps.any():
            head = int(np.argmin(np.where(caps > 0, obs.arrival, np.inf)))
            left = budget.headroom_a - phases.T @ rates + self.trickle_a * phases[head]
            rates[head] = quantise(np.array([left[phases[head] > 0].min()]), caps[head:head + 1])[0]
        return rates


@dataclass
class PausesWithOneAmp:
    """Defect: pauses a port by offering it 1 A instead of 0 (it takes a low pilot for a pause). Caught by
    scarcity, where not every EV fits at 6 A: a 1 A set point (minimum-current rule, IEC 61851-1)."""

    inner: Controller
    name: str = "pauses-with-one-amp"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        sp = np.asarray(decision.setpoints_a, dtype=float)
        wanting = obs.connected & (obs.remaining_kwh > 0)
        return Decision(np.where(wanting & (sp <= 0.0), 1.0, sp), decision.fallback)


# -- service --------------------------------------------------------------------------------------------------------
@dataclass
class StarvesOnePort(Distorts):
    """Defect: never gives port 0 any current (a port missing from its table). Caught by short sessions in
    turn: the EV on port 0 arrives alone and waits while the site idles (service rule)."""

    name: str = "starves-one-port"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        ev_max = obs.ev_max_a.copy()
        ev_max[0] = 0.0
        return replace(obs, ev_max_a=ev_max)


@dataclass
class AdmitsArrivalsOnlyAtRotation(Distorts):
    """Defect: admits a session only at its admission rotation (every ``rotate_s``): the sessions present at
    start-up charge, a later arrival waits for the next rotation even when the site is idle. Caught by
    short sessions in turn: once the first EV is full the later ones wait with the site idle (service
    rule)."""

    rotate_s: float = 900.0
    name: str = "admits-arrivals-only-at-rotation"
    architecture: str = "local"
    _arrival: Array | None = field(default=None, init=False)
    _admitted: Array | None = field(default=None, init=False)
    _round: int | None = field(default=None, init=False)

    def seen(self, obs: Observation) -> Observation:
        rotation = int(obs.time // self.rotate_s)
        key = np.where(obs.connected, obs.arrival, np.nan)
        if self._arrival is None or self._admitted is None or self._round is None:
            self._arrival, self._admitted, self._round = key, obs.connected.copy(), rotation
        new = obs.connected & (key != self._arrival)
        self._admitted = np.where(new, False, self._admitted & obs.connected)
        if rotation != self._round:
            self._admitted, self._round = obs.connected.copy(), rotation
        self._arrival = key
        return replace(obs, ev_max_a=np.where(self._admitted, obs.ev_max_a, 0.0))


@dataclass
class HaltsAfterSessionEnds:
    """Defect: its session-end handler fails, and the control loop falls back to 0 A for every port from
    then on (a latched safe state). Caught by short sessions in turn: after the first EV is full the others
    wait with the site idle (service rule)."""

    inner: Controller
    name: str = "halts-after-session-ends"
    architecture: str = "local"
    _wanting: Array | None = field(default=None, init=False)
    _halted: bool = field(default=False, init=False)

    def decide(self, obs: Observation) -> Decision:
        wanting = obs.connected & (obs.remaining_kwh > 0)
        self._halted |= self._wanting is not None and bool((self._wanting & ~wanting).any())
        self._wanting = wanting
        decision = self.inner.decide(obs)
        return Decision(np.zeros(len(obs.connected)), True) if self._halted else decision


@dataclass
class SequentialAdvancesOnlyOnUnplug(Distorts):
    """Defect: sequential, and the turn passes only when the head's EV unplugs, not when it is full (it
    takes a session for charging until it leaves): the others wait for as long as the full EV stays
    plugged in, with the site idle. Caught by service in ``short_sessions``: once the full EV has drawn
    nothing for 60 s it no longer counts as served, and the waiting sessions wait past the settling time."""

    name: str = "sequential-advances-only-on-unplug"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        return replace(obs, remaining_kwh=np.where(obs.connected, np.maximum(obs.remaining_kwh, 1e-3), 0.0))


@dataclass
class PausesAllWhenShareBelowMinimum(Allocates):
    """Defect: a fixed share per port (each phase's headroom divided by the site's number of ports, free ones
    included) through the 6 A quantiser, nothing a free port leaves redistributed: when the share falls below
    6 A every port pauses, although the site has room to serve sessions at 6 A. Caught by service under
    ``scarcity`` (25 % of 80 A: a 4.65 A share, every session waits with 20 A of room)."""

    name: str = "pauses-all-when-share-below-minimum"
    architecture: str = "local"

    def share(self, budget: Budget, obs: Observation) -> Array:
        per_port = budget.headroom_a / max(len(budget.caps_a), 1)
        share = np.where(budget.phases > 0, per_port[None, :], np.inf).min(axis=1)
        return quantise(np.minimum(share, budget.caps_a), budget.caps_a)


# -- faults -----------------------------------------------------------------------------------------------------------
@dataclass
class TrustsDriftingMeter(SiteMeterIntegral):
    """Defect: slow integral feedback (k_i = 0.05 /s, judged in the 60 s class, where it passes with an
    honest meter) that trusts the site meter without a plausibility check. Caught by F1, a site meter
    reading 20 % low: it climbs toward L / 0.8, +25 % (the 3.2 table), and within the fault's 60 s settling
    window its overshoot integral already exceeds the allowance (transient fail; steady and hard fail
    after it)."""

    k_i: float = 0.05
    name: str = "trusts-drifting-meter"
    architecture: str = "cloud"


@dataclass
class HeadroomFromSiteMeterUnchecked(Allocates):
    """Defect: evcc-style headroom capping: the room for the EVs is the limit less the margin less the site
    meter's reading plus what the port meters show, with no plausibility check (the shell's stale-meter
    fallback kept). With an honest meter that is the reference's headroom; with a site meter reading 20 %
    low the loop settles 25 % above the limit. Caught by F1 (steady and hard fail)."""

    name: str = "headroom-from-site-meter-unchecked"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        ported = obs.phases.T @ obs.measured_a
        budget = self._shell(replace(obs, site_a=np.maximum(obs.site_a, ported)))  # never implausible
        return self._shell.issue(self.share(budget, obs))

    def share(self, budget: Budget, obs: Observation) -> Array:
        if budget.fallback:
            return equal_share(budget.caps_a, budget.phases, budget.headroom_a)
        limit = obs.limit_a
        room = limit - (MARGIN_SHARE * limit + MARGIN_A) - obs.site_a + obs.phases.T @ obs.measured_a
        return equal_share(budget.caps_a, budget.phases, np.maximum(room, 0.0))


@dataclass
class NoFallbackOnStaleMeter(Distorts):
    """Defect: keeps using the last site reading however old (it never sees the meter's age), so it has no
    stale-meter fallback. Caught by F2 with an unmanaged-load step while the meter is frozen: it keeps
    allocating for the old building load and the site stays above the band (steady fail)."""

    name: str = "no-fallback-on-stale-meter"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        return replace(obs, site_age_s=0.0)


@dataclass
class StaleMeterTimeoutOneMinute(Distorts):
    """Defect: a site meter counts as stale only after a minute without a fresh reading (evcc's default
    meter timeout) instead of a few seconds. Caught by F2, the meter gone for 2 min while the building load
    steps up: a minute above the band before the fallback (steady fail)."""

    timeout_s: float = 60.0
    name: str = "stale-meter-timeout-one-minute"
    architecture: str = "local"

    def seen(self, obs: Observation) -> Observation:
        return replace(obs, site_age_s=obs.site_age_s if obs.site_age_s > self.timeout_s else 0.0)


@dataclass
class NoResumeAfterOutage:
    """Defect: once the site meter has gone stale it stops charging for good, even after the meter is
    back. Caught by F2 with recovery: after the meter returns (and the recovery time), the sessions wait
    while the site idles (service rule)."""

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
class AssumesEvsFollowPilot(Distorts):
    """Defect: takes every EV to follow its pilot: a port meter above the set point last sent is read as
    the set point, and the site meter's excess over the declared building load (``declared_a``) as a meter
    glitch. Caught by F4, an EV that draws 32 A whatever its pilot says: it is never budgeted at its draw and
    the site stays above the band (steady fail)."""

    declared_a: float = 0.0
    name: str = "assumes-evs-follow-pilot"
    architecture: str = "local"
    _sent: Array | None = field(default=None, init=False)

    def decide(self, obs: Observation) -> Decision:
        decision = super().decide(obs)
        self._sent = np.asarray(decision.setpoints_a, dtype=float).copy()
        return decision

    def seen(self, obs: Observation) -> Observation:
        measured = obs.measured_a if self._sent is None else np.minimum(obs.measured_a, self._sent)
        ported = obs.phases.T @ measured
        site = ported + np.clip(obs.site_a - ported, 0.0, self.declared_a)
        return replace(obs, measured_a=measured, site_a=site)


@dataclass
class UnsafeFallbackIgnoresBuildingLoad:
    """Defect: its stale-meter fallback assumes no building load at all (a declared worst case of 0 A)
    instead of the declared worst case: ``Parallel`` with ``unmanaged_max_a = 0``. Caught by F2, the building
    load stepping up while the meter cannot show it: the fallback hands the EVs the whole limit and the site
    stays above the band (steady fail)."""

    inner: Parallel
    name: str = "unsafe-fallback-ignores-building-load"
    architecture: str = "local"

    def decide(self, obs: Observation) -> Decision:
        return self.inner.decide(obs)


@dataclass
class TrustsDeclaredPhases(Distorts):
    """Defect: takes each EV's phases from the first observation of its session (what the EV declares, as
    the rig loop reports them while the EV draws nothing) and never from the port meter afterwards.
    Caught by F6, a three-phase EV declared single-phase on L1 plugging in while the others charge: the
    controller counts it on L1 only and gives L2 and L3 to the other ports, which overload them until the
    shell's site-meter estimate books the uncounted current as unmanaged load (about 9 s above the band,
    peak above 1.13 x the breaker: steady and hard fail). The reference shell budgets a port on all three
    phases until its meter has shown which it draws.

    (The opposite mis-declaration, a single-phase EV counted on all three phases, over-counts and cannot
    overload a phase: it only wastes headroom.)"""

    name: str = "trusts-declared-phases"
    architecture: str = "local"
    _phases: Array | None = field(default=None, init=False)
    _arrival: Array | None = field(default=None, init=False)

    def seen(self, obs: Observation) -> Observation:
        if self._phases is None or self._arrival is None or self._phases.shape != obs.phases.shape:
            self._phases, self._arrival = obs.phases.copy(), np.full(len(obs.connected), np.nan)
        new = obs.connected & (obs.arrival != self._arrival)
        self._phases[new] = obs.phases[new]
        self._arrival = np.where(obs.connected, obs.arrival, np.nan)
        return replace(obs, phases=self._phases.copy())


@dataclass
class ForgetsSessionsOnRestart(Distorts):
    """Defect: charges only the sessions it saw plug in; sessions that were already connected when it
    started are never given current. Caught by a controller restart with sessions in progress (the rig's
    ``restart_controller``): after the restart the site delivers nothing to them (service rule)."""

    name: str = "forgets-sessions-on-restart"
    architecture: str = "local"
    _known: Array | None = field(default=None, init=False)
    """Per port: the arrival time of the session it saw arrive (nan: none)."""
    _seen: Array | None = field(default=None, init=False)
    """Per port: connected at the previous call."""

    def seen(self, obs: Observation) -> Observation:
        n = len(obs.connected)
        if self._known is None or self._seen is None or len(self._known) != n:
            self._known, self._seen = np.full(n, np.nan), obs.connected.copy()  # present at start: not seen arriving
        arrived = obs.connected & ~self._seen.astype(bool)
        self._known = np.where(arrived, obs.arrival, np.where(obs.connected, self._known, np.nan))
        self._seen = obs.connected.copy()
        return replace(obs, ev_max_a=np.where(np.isnan(self._known), 0.0, obs.ev_max_a))


@dataclass
class AdoptsRunningSessionsAtMaximum:
    """Defect: a session it finds already charging when it starts (after a restart) is adopted at its EV's
    maximum until its first periodic allocation ``adopt_s`` later. Caught by a controller restart mid-session:
    every charging EV at 32 A, far above the band and above 1.13 x the breaker (steady and hard fail). At a
    cold start nothing is charging yet, so it passes every other condition."""

    inner: Controller
    adopt_s: float = 15.0
    name: str = "adopts-running-sessions-at-maximum"
    architecture: str = "local"
    _started: float | None = field(default=None, init=False)
    _adopted: Array | None = field(default=None, init=False)

    def decide(self, obs: Observation) -> Decision:
        if self._started is None or self._adopted is None:
            self._started, self._adopted = obs.time, obs.connected & (obs.measured_a > 2.0)
        decision = self.inner.decide(obs)
        if obs.time - self._started >= self.adopt_s:
            return decision
        return Decision(np.where(self._adopted & obs.connected, obs.ev_max_a, decision.setpoints_a), decision.fallback)


def _dr_spans(scenario: Scenario) -> tuple[tuple[float, float], ...]:
    return tuple((e.start, e.start + e.duration) for e in scenario.events if e.kind == "demand_response")


CATALOGUE: dict[str, Callable[[Scenario], Controller]] = {
    "IgnoresLimitAboveTwoSessions": lambda s: IgnoresLimitAboveTwoSessions(_parallel(s)),
    "LatchesLimitAtStart": lambda s: LatchesLimitAtStart(_parallel(s)),
    "AllocatesOnlyOnSessionChange": lambda s: AllocatesOnlyOnSessionChange(_parallel(s)),
    "IgnoresDemandResponse": lambda s: IgnoresDemandResponse(_parallel(s)),
    "ReducesOnlyWhenDemandResponseStarts": lambda s: ReducesOnlyWhenDemandResponseStarts(_parallel(s), _dr_spans(s)),
    "CombinesLimitsWithMax": lambda s: CombinesLimitsWithMax(_parallel(s)),
    "BudgetsCommissionedBuildingLoad": lambda s: BudgetsCommissionedBuildingLoad(_parallel(s), s.unmanaged_a),
    "SmoothsBuildingLoadRises": lambda s: SmoothsBuildingLoadRises(_parallel(s)),
    "BalancesPowerNotPhases": lambda s: BalancesPowerNotPhases(_parallel(s)),
    "ChecksEachPortAgainstTheLimit": lambda s: ChecksEachPortAgainstTheLimit(declared_unmanaged_a(s)),
    "OscillatingIntegral": lambda s: OscillatingIntegral(),
    "IncreasesBeforeDecreases": lambda s: IncreasesBeforeDecreases(_parallel(s)),
    "DebouncesLimitDrops": lambda s: DebouncesLimitDrops(_parallel(s)),
    "SlowToReduce": lambda s: SlowToReduce(_parallel(s)),
    "AimsAtBandEdge": lambda s: AimsAtBandEdge(_parallel(s)),
    "FillsToTheBand": lambda s: FillsToTheBand(_parallel(s)),
    "SharesWithoutMinimum": lambda s: SharesWithoutMinimum(declared_unmanaged_a(s)),
    "TrickleToWaitingSessions": lambda s: TrickleToWaitingSessions(declared_unmanaged_a(s)),
    "PausesWithOneAmp": lambda s: PausesWithOneAmp(_parallel(s)),
    "StarvesOnePort": lambda s: StarvesOnePort(_parallel(s)),
    "AdmitsArrivalsOnlyAtRotation": lambda s: AdmitsArrivalsOnlyAtRotation(_parallel(s)),
    "HaltsAfterSessionEnds": lambda s: HaltsAfterSessionEnds(_parallel(s)),
    "SequentialAdvancesOnlyOnUnplug": lambda s: SequentialAdvancesOnlyOnUnplug(_sequential(s)),
    "PausesAllWhenShareBelowMinimum": lambda s: PausesAllWhenShareBelowMinimum(declared_unmanaged_a(s)),
    "TrustsDriftingMeter": lambda s: TrustsDriftingMeter(),
    "HeadroomFromSiteMeterUnchecked": lambda s: HeadroomFromSiteMeterUnchecked(declared_unmanaged_a(s)),
    "NoFallbackOnStaleMeter": lambda s: NoFallbackOnStaleMeter(_parallel(s)),
    "StaleMeterTimeoutOneMinute": lambda s: StaleMeterTimeoutOneMinute(_parallel(s)),
    "UnsafeFallbackIgnoresBuildingLoad": lambda s: UnsafeFallbackIgnoresBuildingLoad(_parallel(s, unmanaged_max_a=0.0)),
    "NoResumeAfterOutage": lambda s: NoResumeAfterOutage(_parallel(s)),
    "AssumesEvsFollowPilot": lambda s: AssumesEvsFollowPilot(_parallel(s), declared_unmanaged_a(s)),
    "TrustsDeclaredPhases": lambda s: TrustsDeclaredPhases(_parallel(s)),
    "ForgetsSessionsOnRestart": lambda s: ForgetsSessionsOnRestart(_parallel(s)),
    "AdoptsRunningSessionsAtMaximum": lambda s: AdoptsRunningSessionsAtMaximum(_parallel(s)),
}
"""Every broken controller by defect name, built for a scenario."""

_LOAD_LIMIT = "load_limit/test_load_limit.py::test_site_stays_inside_the_limit"
_FAULTS = "fault_recovery/test_faults.py"

CAUGHT_BY: dict[str, tuple[str, ...]] = {
    "IgnoresLimitAboveTwoSessions": (f"{_LOAD_LIMIT}[limit_step_down]",),
    "LatchesLimitAtStart": (f"{_LOAD_LIMIT}[limit_step_down]",),
    "AllocatesOnlyOnSessionChange": (f"{_LOAD_LIMIT}[unmanaged_load_step]",),
    "IgnoresDemandResponse": (f"{_LOAD_LIMIT}[demand_response_with_notice]",),
    "ReducesOnlyWhenDemandResponseStarts": (f"{_LOAD_LIMIT}[demand_response_with_notice]",),
    "CombinesLimitsWithMax": (f"{_LOAD_LIMIT}[demand_response_without_notice]",),
    "BudgetsCommissionedBuildingLoad": (f"{_LOAD_LIMIT}[unmanaged_load_step]",),
    "SmoothsBuildingLoadRises": (f"{_LOAD_LIMIT}[unmanaged_load_step]",),
    "BalancesPowerNotPhases": (f"{_LOAD_LIMIT}[single_phase_imbalance]",),
    "ChecksEachPortAgainstTheLimit": (f"{_LOAD_LIMIT}[limit_step_down]",),
    "OscillatingIntegral": (f"{_FAULTS}::test_f4_evs_that_follow_late[5s]",),
    "IncreasesBeforeDecreases": (f"{_LOAD_LIMIT}[arrivals]",),
    "DebouncesLimitDrops": (f"{_LOAD_LIMIT}[limit_step_down]",),
    "SlowToReduce": (f"{_LOAD_LIMIT}[limit_step_down]",),
    "AimsAtBandEdge": (f"{_LOAD_LIMIT}[single_phase_imbalance]",),
    "FillsToTheBand": (f"{_LOAD_LIMIT}[single_phase_imbalance]",),
    "SharesWithoutMinimum": (f"{_LOAD_LIMIT}[scarcity]",),
    "TrickleToWaitingSessions": (f"{_LOAD_LIMIT}[scarcity]",),
    "PausesWithOneAmp": (f"{_LOAD_LIMIT}[scarcity]",),
    "StarvesOnePort": (f"{_LOAD_LIMIT}[short_sessions]",),
    "AdmitsArrivalsOnlyAtRotation": (f"{_LOAD_LIMIT}[short_sessions]",),
    "HaltsAfterSessionEnds": (f"{_LOAD_LIMIT}[short_sessions]",),
    "SequentialAdvancesOnlyOnUnplug": (f"{_LOAD_LIMIT}[short_sessions]",),
    "PausesAllWhenShareBelowMinimum": (f"{_LOAD_LIMIT}[scarcity]",),
    "TrustsDriftingMeter": (f"{_FAULTS}::test_f1_site_meter_reads_20_percent_low",),
    "HeadroomFromSiteMeterUnchecked": (f"{_FAULTS}::test_f1_site_meter_reads_20_percent_low",),
    "NoFallbackOnStaleMeter": (f"{_FAULTS}::test_f2_site_meter_stale_or_gone[gone-2min]",),
    "StaleMeterTimeoutOneMinute": (f"{_FAULTS}::test_f2_site_meter_stale_or_gone[gone-2min]",),
    "UnsafeFallbackIgnoresBuildingLoad": (f"{_FAULTS}::test_f2_site_meter_stale_or_gone[gone-2min]",),
    "NoResumeAfterOutage": (f"{_FAULTS}::test_f2_site_meter_stale_or_gone[stale-10s]",),
    "AssumesEvsFollowPilot": (f"{_FAULTS}::test_f4_ev_ignores_the_pilot",),
    "TrustsDeclaredPhases": (f"{_FAULTS}::test_f6_phase_misdeclaration[3ph-declared-1ph]",),
    "ForgetsSessionsOnRestart": (f"{_FAULTS}::test_controller_restart_mid_session",),
    "AdoptsRunningSessionsAtMaximum": (f"{_FAULTS}::test_controller_restart_mid_session",),
}
"""The suite tests (relative to ``suites/``, ``[...]``: the test's other parameter ids) expected to catch
each defect: ``hil selftest`` checks them, and shows every other test that catches it too."""

