"""What a site controller sees and what it decides, and the safety shell every controller shares.

A controller gets an ``Observation`` (port states, EV limits, currents measured by the port meters, the
site meter with its age, the site limit from every source, the price now) and returns a ``Decision``
(per-port current set points). The same controller runs in the in-memory simulator and on a rig through
the drivers: only the code that builds observations differs.

The shell (``Headroom``) turns the observation into a ``Budget``: per-phase headroom ``H = L - U_hat -
margin - reserved`` and per-port caps. ``L`` is the minimum over limit sources, ``U_hat`` the unmanaged load
(site meter minus the port meters, smoothed), the margin ``0.02 L + 1 A``. It falls back (``U_hat`` := the
declared worst case ``unmanaged_max_a``, nothing taken from the site meter) when

- (a) the site-meter sample is older than 3 s;
- (b) the site meter is implausible: the port meters add up to more than the site meter plus the margin
  on a phase for more than 10 s (it reads low), or the site reading less the port meters jumps by more
  than half the limit in one sample;

and leaves the fallback only after 60 s of healthy data. An implausible sample never feeds the estimate
(while the 10 s run, the estimate holds); leaving the fallback, the estimate falls from the worst case
like any fall of the unmanaged load (smoothed), so the headroom does not leap back. (The planner-silence
trigger (c) belongs to the architectures with a remote planner.)

(d) A port that draws more than 2 A above the set point the shell last issued for it, for more than
10 s, is budgeted at what it draws: its measured current is reserved off the headroom and it gets no set
point (cap 0) until it has followed for 60 s. A port drawing less than its set point stays budgeted at
the set point: it may catch up at any moment. Controllers issue their set points through the shell
(``Headroom.issue``), so it knows what each port was told.

Phases are learned from metering, never assumed: a port is budgeted on all three phases until its meter
has shown it drawing this session, then on the phases it showed (a declaration is not trusted).

Units: seconds, A per phase, kWh, V.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

STALE_METER_S = 3.0
"""A site-meter sample older than this triggers the fallback [s]."""
EMA_TAU_S = 2.5
"""Time constant of the unmanaged-load estimate [s]."""
MARGIN_SHARE = 0.02
MARGIN_A = 1.0
"""The safety margin ``0.02 L + 1 A`` kept below the limit (and the plausibility tolerance)."""
IMPLAUSIBLE_S = 10.0
"""The port meters exceeding the site meter (plus the margin) for longer than this triggers the fallback [s]."""
JUMP_SHARE = 0.5
"""A jump of the site reading less the port meters by more than this share of the limit in one sample
triggers the fallback (a glitch: load changes the port meters explain are not jumps)."""
HEALTHY_EXIT_S = 60.0
"""Healthy data needed to leave the fallback, and following needed to release a port budgeted at its draw [s]."""
DRAWING_A = 2.0
"""A port draws when its meter shows more than this [A]: only then are its phases known."""
NOT_FOLLOWING_A = 2.0
NOT_FOLLOWING_S = 10.0
"""A port drawing more than ``NOT_FOLLOWING_A`` above its set point for longer than this [s] is budgeted at
its draw."""


@dataclass
class Observation:
    """One instant at the site. Port arrays have one entry per port."""

    time: float
    connected: NDArray[np.bool_]
    phases: Array
    """(ports, 3) 0/1: the phases each port's EV draws from (learned from metering)."""
    ev_max_a: Array
    """Largest current each EV/EVSE accepts now [A per phase]."""
    measured_a: Array
    """Current each port meter measures [A per phase]."""
    remaining_kwh: Array
    arrival: Array
    departure: Array
    site_a: Array
    """Site meter per phase [A] (includes the unmanaged load)."""
    site_age_s: float
    limits: dict[str, Array]
    """Per-phase limit [A] by source: breaker, contract, ocpp, dr, ..."""
    price: float = 0.0
    phase_voltage: float = 230.0
    export_kw: float = 0.0
    """V2G: the export the grid requests from the site now [kW]."""
    v2g_floor_kwh: Array | None = None
    """V2G: per port, energy above the EV's emergency floor [kWh]; 0 for an EV that cannot discharge. Its
    departure minimum lies ``v2g_floor_kwh + remaining_kwh`` above the floor."""

    @property
    def limit_a(self) -> Array:
        """The site limit: the minimum of every source, per phase."""
        values = iter(self.limits.values())
        limit = next(values)
        for other in values:
            limit = np.minimum(limit, other)
        return limit


@dataclass
class Decision:
    setpoints_a: Array
    """Per-port current set points [A per phase]; 0 pauses the port, negative discharges (V2G)."""
    fallback: bool = False
    """True while the controller runs its safe allocation."""


class Controller(Protocol):
    name: str
    architecture: str
    """Compliance class: ``local``, ``timer``, ``cloud``, ``plain`` (see ``hil.compliance.SETTLING_S``)."""

    def decide(self, obs: Observation) -> Decision: ...


@dataclass(frozen=True)
class Budget:
    """What the shell lets a controller allocate now."""

    headroom_a: Array
    """Per-phase headroom [A]: limit less unmanaged load, margin and the draw of ports not following."""
    phases: Array
    """(ports, 3) the phases to budget each port on: as its meter showed them while it drew this session;
    all three for a connected port not seen drawing yet (a declaration is not trusted)."""
    caps_a: Array
    """Per-port upper bound [A per phase]: the EV's maximum for a port that wants energy, else 0 (also 0
    for a port budgeted at its own draw because it does not follow its set point)."""
    fallback: bool
    """True while the site meter is not trusted (stale or implausible) and the worst case is assumed."""


@dataclass
class Headroom:
    """The safety shell: headroom from the limit, the unmanaged-load estimate and the margin; the site-meter
    watchdog and plausibility check with their fallback; set-point following per port.

    Call it once per decision with the observation, then hand the set points to ``issue``.

    It runs every second for every controller, so the usual case is kept cheap: what depends only on the
    limit (margin, jump threshold) or on the limit and the estimate (the headroom) is recomputed only when
    those change, so is the load the port meters add up to (when their readings or the phases change) and
    the caps (when a port's wish or its EV's maximum changes), and the phase and following checks return
    early while nothing about them changed. The arrays of a ``Budget``, and the ``Budget`` itself while
    none of them changed, may be shared between calls: they are read-only (the same object means the same
    values).
    """

    unmanaged_max_a: float = 0.0
    """Declared worst-case unmanaged load per phase [A], assumed in fallback."""
    _estimate: Array | None = field(default=None, repr=False)
    _last: float | None = field(default=None, repr=False)
    _residual: Array | None = field(default=None, repr=False)
    """Site reading less the port meters at the last fresh sample [A per phase] (for the jump test)."""
    _implausible_since: float | None = field(default=None, repr=False)
    _healthy_since: float | None = field(default=None, repr=False)
    _fallback: bool = field(default=False, repr=False)
    _sent: Array | None = field(default=None, repr=False)
    """Set points issued last [A per phase]."""
    _learned: Array = field(default_factory=lambda: np.zeros((0, 3)), repr=False)
    """(ports, 3) phases each port's meter showed this session (nan: not drawing yet)."""
    _session: Array = field(default_factory=lambda: np.zeros(0), repr=False)
    """Per port: arrival time of the session the learned phases belong to (-inf: free port)."""
    _seen: bytes = field(default=b"", repr=False)
    """The connected flags and arrivals seen last, as bytes (the same bytes: no session began or ended)."""
    _unknown: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False)
    """Per port: connected, and its meter has not shown its phases yet."""
    _unknown_any: bool = field(default=False, repr=False)
    _phases_out: Array | None = field(default=None, repr=False)
    """The phases budgeted last (recomputed only when something about them changed)."""
    _pins: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False)
    """Per port: budgeted at its own draw."""
    _over_since: Array = field(default_factory=lambda: np.zeros(0), repr=False)
    """Per port: since when it draws more than 2 A above its set point [s] (nan: it does not)."""
    _followed_since: Array = field(default_factory=lambda: np.zeros(0), repr=False)
    """Per pinned port: since when it follows its set point again [s] (nan: it does not)."""
    _watching: bool = field(default=False, repr=False)
    """Some port is over its set point or pinned (else the following check has nothing to track)."""
    _limit_key: bytes | None = field(default=None, repr=False)
    _margin: Array = field(default_factory=lambda: np.zeros(3), repr=False)
    _margin_f: list[float] = field(default_factory=list, repr=False)
    _jump_f: list[float] = field(default_factory=list, repr=False)
    """Margin (also as floats) and jump threshold for the limit ``_limit_key`` [A per phase]."""
    _worst: Array | None = field(default=None, repr=False)
    """The worst-case estimate (``unmanaged_max_a`` on every phase)."""
    _headroom_key: bytes | None = field(default=None, repr=False)
    _headroom_raw: Array = field(default_factory=lambda: np.zeros(3), repr=False)
    _headroom: Array = field(default_factory=lambda: np.zeros(3), repr=False)
    """Headroom before and after clipping at 0 for the limit and estimate ``_headroom_key``."""
    _ported_key: bytes | None = field(default=None, repr=False)
    _ported: Array = field(default_factory=lambda: np.zeros(3), repr=False)
    """What the port meters add up to per phase [A] for the phases and readings ``_ported_key``."""
    _caps_key: bytes | None = field(default=None, repr=False)
    _caps: Array = field(default_factory=lambda: np.zeros(0), repr=False)
    """Per-port caps [A per phase] for the ports wanting energy and the EV maxima ``_caps_key``."""
    _budget: Budget | None = field(default=None, repr=False)
    """The budget returned last (returned again while all its parts are the same objects)."""
    _sources: tuple[bytes, ...] | None = field(default=None, repr=False)
    _limit: Array = field(default_factory=lambda: np.zeros(3), repr=False)
    """The site limit [A per phase] for the limit sources ``_sources`` (their values as bytes)."""
    _following: bytes | None = field(default=None, repr=False)
    """Port readings and set points (as bytes) under which no port drew more than 2 A above its set point."""
    _unknown_quiet: bytes | None = field(default=None, repr=False)
    """Port readings (as bytes) under which no port of unknown phases drew more than 2 A."""
    _settled: bool = field(default=False, repr=False)
    """The last site-meter sample was healthy, the estimate sits on it, no fallback, and the same sample again
    under the same limit passes every check (its jump thresholds are not negative)."""

    def __call__(self, obs: Observation) -> Budget:
        """The budget for this decision."""
        sources = tuple([a.tobytes() for a in obs.limits.values()])
        if sources != self._sources:
            self._sources, self._limit = sources, obs.limit_a
        limit = self._limit
        limit_key = limit.tobytes()
        if limit_key != self._limit_key:
            self._limit_key, self._margin = limit_key, MARGIN_SHARE * limit + MARGIN_A
            self._margin_f, self._jump_f = self._margin.tolist(), (JUMP_SHARE * limit).tolist()
            self._settled = False
        measured = obs.measured_a.tobytes()
        fallback = self._site_meter(obs, measured)
        if fallback:  # leaving the fallback, the estimate falls from here
            if self._worst is None or self._worst[0] != self.unmanaged_max_a:
                self._worst = frozen(np.full(3, self.unmanaged_max_a))
            self._estimate = self._worst
        assert self._estimate is not None
        pinned = self._pinned(obs, measured)
        phases = self._phases(obs, measured)
        wanting = obs.connected & (obs.remaining_kwh > 0)
        headroom_key = limit_key + self._estimate.tobytes()
        if headroom_key != self._headroom_key:
            raw = limit - self._estimate - self._margin
            self._headroom_key, self._headroom_raw, self._headroom = headroom_key, raw, frozen(np.maximum(raw, 0.0))
        headroom = self._headroom
        if self._watching:
            draw = phases.T @ np.where(pinned, np.maximum(obs.measured_a, 0.0), 0.0)
            headroom = np.maximum(self._headroom_raw - draw, 0.0)
            wanting = wanting & ~pinned
        caps_key = wanting.tobytes() + obs.ev_max_a.tobytes()
        if caps_key != self._caps_key:
            self._caps_key, self._caps = caps_key, frozen(np.where(wanting, obs.ev_max_a, 0.0))
        last = self._budget
        if (last is None or last.headroom_a is not headroom or last.phases is not phases or last.caps_a is not self._caps
                or last.fallback != fallback):
            self._budget = last = Budget(headroom, phases, self._caps, fallback)
        return last

    def issue(self, setpoints_a: Array) -> Decision:
        """The decision carrying ``setpoints_a`` [A per phase], remembered for the following check."""
        self._sent = np.array(setpoints_a, dtype=float)
        return Decision(self._sent.copy(), self._fallback)

    def _site_meter(self, obs: Observation, measured: bytes) -> bool:
        """Update the unmanaged-load estimate from a healthy sample and the fallback state; True in fallback.
        ``measured``: the port meters' readings as bytes."""
        t = obs.time
        stale = obs.site_age_s > STALE_METER_S
        ported_key = obs.phases.tobytes() + measured
        if ported_key != self._ported_key:
            self._ported_key, self._ported = ported_key, obs.phases.T @ obs.measured_a
        residual = obs.site_a - self._ported
        if self._settled and not stale and self._residual is not None and residual.tobytes() == self._residual.tobytes():
            self._last = t  # the same healthy sample again: every check passes as before, the estimate stays
            return False
        # Per phase in plain floats (the same arithmetic; three numbers are cheaper than numpy calls).
        r = residual.tolist()
        reads_low = not stale and any(x + m < 0.0 for x, m in zip(r, self._margin_f))
        jump = (not stale and self._residual is not None
                and any(abs(x - p) > j for x, p, j in zip(r, self._residual.tolist(), self._jump_f)))
        self._residual = None if stale else residual
        if reads_low:
            self._implausible_since = t if self._implausible_since is None else self._implausible_since
        else:
            self._implausible_since = None
        implausible = jump or (self._implausible_since is not None and t - self._implausible_since > IMPLAUSIBLE_S)
        healthy = not (stale or reads_low or jump)
        if stale or implausible:
            self._fallback, self._healthy_since = True, None
        elif not healthy:
            self._healthy_since = None
        else:
            self._healthy_since = t if self._healthy_since is None else self._healthy_since
            if self._fallback and t - self._healthy_since >= HEALTHY_EXIT_S:
                self._fallback = False
        if healthy:
            sample = np.maximum(residual, 0.0)
            if self._estimate is None or self._last is None:
                self._estimate = sample
            elif sample.tobytes() != self._estimate.tobytes():  # (a steady load leaves the estimate as it is)
                k = 1.0 - math.exp(-max(t - self._last, 0.0) / EMA_TAU_S)
                # Rises count at once (safety), falls are smoothed.
                self._estimate = np.maximum(sample, self._estimate + k * (sample - self._estimate))
            self._last = t
            self._settled = (not self._fallback and sample.tobytes() == self._estimate.tobytes()
                             and not any(j < 0.0 for j in self._jump_f))
        else:
            self._settled = False
            if self._estimate is None:
                self._estimate = np.full(3, self.unmanaged_max_a)
        return self._fallback

    def _phases(self, obs: Observation, measured: bytes) -> Array:
        """Phases learned from metering: a port's phases from its first sample drawing more than 2 A this
        session on; all three until then; none for a free port. ``measured``: the port meters' readings as
        bytes."""
        n = len(obs.connected)
        if self._phases_out is None or len(self._session) != n:
            self._learned, self._session, self._seen = np.full((n, 3), np.nan), np.full(n, np.nan), b""
        renewed = False
        seen = obs.connected.tobytes() + obs.arrival.tobytes()
        if seen != self._seen:  # a session may have begun or ended
            self._seen = seen
            key = np.where(obs.connected, obs.arrival, -np.inf)  # a session is known by its arrival
            changed = key != self._session
            renewed = bool(changed.any())
            if renewed:  # a session began or ended: what was learned for the port is void
                self._learned[changed] = np.nan
                self._session = key
        if not renewed and (not self._unknown_any or measured == self._unknown_quiet
                            or not np.count_nonzero(self._unknown & (np.abs(obs.measured_a) > DRAWING_A))):
            assert self._phases_out is not None
            if self._unknown_any:
                self._unknown_quiet = measured
            return self._phases_out  # nothing new to learn
        self._unknown_quiet = None
        known = np.isfinite(self._session)  # a session at the port
        unknown = known & np.isnan(self._learned[:, 0])
        drawing = unknown & (np.abs(obs.measured_a) > DRAWING_A)
        self._learned[drawing] = obs.phases[drawing]
        self._unknown = unknown & ~drawing
        self._unknown_any = bool(self._unknown.any())
        out = np.where(np.isnan(self._learned), 1.0, self._learned)
        self._phases_out = frozen(np.where(known[:, None], out, 0.0))
        return self._phases_out

    def _pinned(self, obs: Observation, measured: bytes) -> NDArray[np.bool_]:
        """Ports budgeted at their own draw: more than 2 A above their set point for more than 10 s, until
        they have followed it for 60 s (or leave). ``measured``: the port meters' readings as bytes."""
        n, t = len(obs.connected), obs.time
        if self._sent is None or len(self._pins) != n:
            self._sent, self._pins = np.zeros(n), np.zeros(n, dtype=bool)
            self._over_since, self._followed_since = np.full(n, np.nan), np.full(n, np.nan)
        if not self._watching:
            following = measured + self._sent.tobytes()
            if following == self._following:
                return self._pins  # the same readings and set points as when everyone followed
        excess = obs.measured_a - self._sent
        if not self._watching and not np.count_nonzero(excess > NOT_FOLLOWING_A):
            self._following = following
            return self._pins  # everyone follows (the usual case): nothing to track
        over = obs.connected & (excess > NOT_FOLLOWING_A)
        self._over_since = np.where(over, np.fmin(self._over_since, t), np.nan)
        pins = self._pins | (over & (t - self._over_since > NOT_FOLLOWING_S))
        followed = np.where(pins & ~over, np.fmin(self._followed_since, t), np.nan)
        pins &= obs.connected & ~(t - followed >= HEALTHY_EXIT_S)
        self._pins, self._followed_since = pins, np.where(pins, followed, np.nan)
        self._watching = bool(over.any() or pins.any())
        return pins


def frozen(a: Array) -> Array:
    """``a``, made read-only: an array shared between calls (a controller's budget and dispatch, the
    in-memory loop's limits), so that whoever writes into it gets an error instead of corrupting the rest."""
    a.flags.writeable = False
    return a
