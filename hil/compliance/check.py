"""Load-limit compliance: did the measured site current stay inside the limit, and how fast did it get
back after each headroom-reducing event?

Pure functions on arrays, exactly as the project defines the check:

- samples (10 Hz on rigs, 1 Hz is enough in simulation) are averaged over **1 s windows**, every phase
  on its own;
- the **tolerance band** is ``L_tol = L x (1 + alpha) + beta`` (alpha 2 %, beta 1 A per phase);
- after each event ``t_k`` (limit step down, demand-response start, unmanaged-load step, new session,
  injected fault) the controller has a **settling time** ``T_s`` that depends on the architecture
  (``SETTLING_S``: local 10 s, cloud 60 s, demand response with notice 0 s);
- **steady state**: outside every ``[t_k, t_k + T_s]`` the current stays at or below ``L_tol``;
- **transient**: inside a window it never rises above the pre-event band, and its overshoot integral is at
  most ``0.5 x (L_tol,before - L_after) x T_s``: no worse than a linear ramp from the old band down to
  the new limit (the definition's ``0.5 x (L_before - L_after) x T_s`` plus the old band's margin, which
  its own sanity table needs: a 5 s EV under a 1 s loop overshoots about 205 A s against 200);
- **hard safety**: any window above ``1.13 x`` the breaker rating, or above ``L_tol`` for more than 60 s
  without a break, fails regardless of windows;
- **sustained excess** (evhil's reading of the definition, for an excess the band hides): in steady state the
  mean over any ``SUSTAINED_S`` (20 s) stays at or below ``L x (1 + alpha)``. The band's ``beta`` (1 A) is
  there for what does not last (pilot resolution, EV ripple, OCPP 0.1 A steps: they average out or stay far
  below 1 A over 20 s); only the measuring chain's class error (``alpha``) can keep a compliant site's true
  current above its limit for that long. A controller that aims inside the band, above its limit, fails.

Units: seconds, A (per phase), V.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

ALPHA = 0.02
"""Relative tolerance: class-1 meter plus current transformer."""
BETA_A = 1.0
"""Absolute tolerance per phase [A]: pilot resolution, EV ripple, OCPP 0.1 A steps."""
WINDOW_S = 1.0
HARD_FACTOR = 1.13
"""IEC 60898-1 conventional non-tripping current, as a multiple of the breaker rating."""
HARD_DURATION_S = 60.0
"""Continuously above the band for longer than this is a hard failure [s]."""
SUSTAINED_S = 20.0
"""The span over which a steady-state mean above ``L x (1 + alpha)`` is a sustained excess [s]."""

SETTLING_S: dict[str, float | None] = {
    "local": 10.0,
    "timer": 10.0,
    "local_slow_bus": 20.0,
    "cloud": 60.0,
    "dr_notice": 0.0,
    "plain": None,
}
"""Settling time by architecture class [s]; ``None``: no coordination, no allowance (the negative control)."""


@dataclass(frozen=True)
class Event:
    """Something that reduces headroom at ``time`` [s].

    ``reduction_a`` is how much the allowed current drops [A per phase]; ``None`` takes it from the
    limit trace (limit before minus limit after). Give it for events the limit trace does not show, such
    as an unmanaged-load step.
    """

    time: float
    kind: str = "limit_step"
    reduction_a: float | None = None
    settling_s: float | None = None
    """This event's settling time [s] when it differs from the run's (demand response with notice: 0)."""


@dataclass
class ComplianceReport:
    """The verdict and the measurements behind it."""

    steady_pass: bool
    transient_pass: bool
    hard_pass: bool
    episodes: int
    """Separate runs of windows above the band (any phase)."""
    max_overshoot_a: float
    max_overshoot_pct: float
    """Largest excess over the band, relative to the band [%]."""
    overshoot_integral_as: float
    """Sum over phases of the current above the band, integrated [A s]."""
    overshoot_kwh: float
    time_above_band_s: float
    worst_settling_s: float | None
    """Longest time from an event until the current stays in band; ``None`` if one never settles."""
    settled_fraction: float
    """Events that settled within ``T_s`` (1.0 when there are no events)."""
    settling_s: float | None
    steady_violation_s: float
    longest_above_s: float
    events: list[dict[str, Any]] = field(default_factory=list)
    first_failure_s: float | None = None
    """Start of the first window that failed a criterion (a steady-state violation, a transient that rose
    or outgrew its allowance, a hard breach, a sustained excess); ``None`` when it passed [s]."""
    sustained_pass: bool = True
    sustained_excess_a: float | None = None
    """The highest steady-state mean over ``SUSTAINED_S`` of the current above the limit, any phase [A];
    ``None`` when no steady span was that long."""
    sustained_allowed_a: float | None = None
    """What that span's limit allowed above it: ``alpha x L`` [A]."""
    breaker_a: float | None = None
    """The breaker rating the hard criterion used [A]."""

    @property
    def passed(self) -> bool:
        return self.steady_pass and self.transient_pass and self.hard_pass and self.sustained_pass

    @property
    def verdict(self) -> str:
        if self.passed:
            return "PASS"
        failed = [n for n, ok in (("steady", self.steady_pass), ("transient", self.transient_pass),
                                  ("hard", self.hard_pass), ("sustained", self.sustained_pass)) if not ok]
        return "FAIL (" + ", ".join(failed) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "verdict": self.verdict}

    def failures(self) -> list[str]:
        """Each failed criterion, citing the compliance definition, with what was measured against what was
        allowed."""
        out = []
        band = f"the band L x {1 + ALPHA:g} + {BETA_A:g} A"
        if not self.steady_pass:
            out.append(f"steady state (compliance definition, criterion 1): {self.steady_violation_s:.0f} s above {band} "
                       f"outside the settling windows (T_s {self.settling_s} s), max overshoot {self.max_overshoot_a:.1f} A "
                       f"({self.max_overshoot_pct:.0f} %); allowed 0 s")
        if not self.transient_pass:
            worst = max(self.events, key=lambda e: e["overshoot_integral_as"] - e["allowance_as"])
            out.append(f"transient (compliance definition, criterion 2): after the {worst['kind']} at {worst['time']:.0f} s "
                       f"the overshoot integral was {worst['overshoot_integral_as']:.0f} A s against an allowance of "
                       f"{worst['allowance_as']:.0f} A s, or the current rose above the band it had before the event")
        if not self.hard_pass:
            out.append(f"hard safety (compliance definition, criterion 3; IEC 60898-1): longest above the band "
                       f"{self.longest_above_s:.0f} s, allowed {HARD_DURATION_S:g} s; no window may exceed {HARD_FACTOR:g} x "
                       f"the breaker ({self.breaker_a:g} A); max overshoot {self.max_overshoot_a:.1f} A")
        if not self.sustained_pass and self.sustained_excess_a is not None and self.sustained_allowed_a is not None:
            out.append(f"sustained excess (compliance definition's alpha without beta, over {SUSTAINED_S:g} s of steady "
                       f"state): the site's mean stood {self.sustained_excess_a:.2f} A above its limit; allowed "
                       f"{self.sustained_allowed_a:.2f} A (the meter's {ALPHA:.0%})")
        return out


def band(limit: ArrayLike, alpha: float = ALPHA, beta: float = BETA_A) -> NDArray[np.float64]:
    """The tolerance band ``L x (1 + alpha) + beta`` [A]."""
    return np.asarray(limit, dtype=float) * (1.0 + alpha) + beta


def windows(t: ArrayLike, values: ArrayLike, width: float = WINDOW_S,
            starts: ArrayLike = ()) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Average samples over consecutive windows of ``width`` seconds starting at the first sample, and
    again at each time in ``starts`` [s] (an event's time: no window mixes samples from before an event
    with samples after it; the window before one may be shorter).

    ``values`` is ``(n,)`` or ``(n, phases)``. Returns window start times and ``(windows, phases)`` means;
    windows without a sample are dropped.
    """
    t = np.asarray(t, dtype=float)
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    if len(t) != len(v):
        raise ValueError(f"{len(t)} times but {len(v)} samples")
    if len(t) == 0:
        return np.zeros(0), np.zeros((0, v.shape[1]))
    cuts = np.unique(np.asarray(starts, dtype=float))
    origins = np.concatenate(([t[0]], cuts[cuts > t[0] + 1e-9]))
    segment = np.searchsorted(origins, t + 1e-9, side="right") - 1
    start = origins[segment] + np.floor((t - origins[segment]) / width + 1e-9) * width
    window_t, index = np.unique(start, return_inverse=True)
    index = index.ravel()
    counts = np.bincount(index)
    sums = np.stack([np.bincount(index, weights=v[:, k]) for k in range(v.shape[1])], axis=1)
    return window_t, sums / counts[:, None]


def check(
    t: ArrayLike, current: ArrayLike, limit: ArrayLike, events: list[Event] | tuple[Event, ...] = (), *,
    settling_s: float | None = 10.0, breaker_a: float | None = None, alpha: float = ALPHA, beta: float = BETA_A,
    window_s: float = WINDOW_S, voltage: float = 230.0,
) -> ComplianceReport:
    """Judge a measured current trace against its limit trace.

    ``t`` [s], ``current`` and ``limit`` [A per phase] as ``(n,)`` or ``(n, phases)`` samples at the same
    times; ``events`` the headroom-reducing events; ``settling_s`` the architecture's settling time
    (``None``: no allowance); ``breaker_a`` the breaker rating for the hard criterion (default: the
    highest limit in the trace); ``voltage`` converts the overshoot integral to kWh.
    """
    times = np.asarray(t, dtype=float)
    if times.size == 0:
        raise ValueError("no samples to judge")
    samples = np.asarray(current, dtype=float).reshape(len(times), -1)
    limits = np.asarray(limit, dtype=float)
    limits = np.broadcast_to(limits.reshape(len(times), -1) if limits.ndim else limits, samples.shape)
    phases = samples.shape[1]
    tw, both = windows(times, np.concatenate((samples, limits), axis=1), window_s, [ev.time for ev in events])
    cur, lim = both[:, :phases], both[:, phases:]
    tol = band(lim, alpha, beta)
    excess = np.maximum(cur - tol, 0.0)  # (windows, phases)
    above = (excess > 1e-9).any(axis=1)
    ts = 0.0 if settling_s is None else float(settling_s)
    breaker = float(np.max(lim)) if breaker_a is None else float(breaker_a)

    in_window = np.zeros(len(tw), dtype=bool)
    event_rows: list[dict[str, Any]] = []
    transient_pass = True
    settle_times: list[float | None] = []
    settle_limits: list[float] = []
    ordered = sorted(events, key=lambda e: e.time)
    failures: list[float] = []
    for k, ev in enumerate(ordered):
        ts_k = ts if ev.settling_s is None else float(ev.settling_s)
        inside = (tw >= ev.time - 1e-9) & (tw < ev.time + ts_k - 1e-9)
        in_window |= inside
        before_rows = np.nonzero(tw < ev.time - 1e-9)[0]
        after_rows = np.nonzero(tw >= ev.time - 1e-9)[0]
        tol_before = tol[before_rows[-1]] if len(before_rows) else tol[0]
        lim_before = lim[before_rows[-1]] if len(before_rows) else lim[0]
        lim_after = lim[after_rows[0]] if len(after_rows) else lim[-1]
        reduction = (
            np.full(lim.shape[1], ev.reduction_a) if ev.reduction_a is not None else np.maximum(lim_before - lim_after, 0.0)
        )
        # A linear ramp from the old band down to the new limit over T_s: half of (drop + old margin) x T_s.
        allowance = 0.5 * (reduction + (tol_before - lim_before)) * ts_k
        integral = excess[inside].sum(axis=0) * window_s
        # A limit drop may not be met by a rise; a load step (explicit reduction) rises by itself.
        rises = ev.reduction_a is None and bool((cur[inside] > np.maximum(tol_before, tol[inside]) + 1e-9).any())
        ok = not rises and bool((integral <= allowance + 1e-9).all())
        transient_pass &= ok
        if not ok:
            failures.append(_transient_failure(tw[inside], excess[inside], allowance, window_s, ev.time))
        # Settling: first window after the event from which the current stays in band until the next event.
        end = next((later.time for later in ordered[k + 1:] if later.time > ev.time + 1e-9), np.inf)
        span = np.nonzero((tw >= ev.time - 1e-9) & (tw < end - 1e-9))[0]
        settled: float | None = None
        if len(span):
            bad = np.nonzero(above[span])[0]
            if len(bad) == 0:
                settled = 0.0
            elif bad[-1] + 1 < len(span):
                settled = float(tw[span[bad[-1] + 1]] - ev.time)
        settle_times.append(settled)
        settle_limits.append(ts_k)
        event_rows.append({
            "time": ev.time, "kind": ev.kind, "reduction_a": float(np.max(reduction)), "settling_s": settled,
            "overshoot_integral_as": float(integral.max()), "allowance_as": float(np.max(allowance)), "transient_pass": ok,
        })

    steady_bad = above & ~in_window
    longest = _longest_run(above) * window_s
    tripping = (cur > HARD_FACTOR * breaker + 1e-9).any(axis=1)
    hard_pass = not bool(tripping.any()) and longest <= HARD_DURATION_S
    failures += [float(tw[np.argmax(flags)]) for flags in (steady_bad, tripping) if flags.any()]
    if longest > HARD_DURATION_S:
        failures.append(float(tw[_run_start(above, int(HARD_DURATION_S / window_s) + 1)]))
    sustained = _sustained(tw, cur, lim, ~in_window, alpha, window_s)
    if sustained is not None and not sustained[0]:
        failures.append(sustained[3])
    over_pct = np.where(tol > 0, excess / np.maximum(tol, 1e-9) * 100.0, 0.0)
    integral_as = float(excess.sum() * window_s)
    known = [s for s in settle_times if s is not None]
    return ComplianceReport(
        steady_pass=not bool(steady_bad.any()),
        transient_pass=transient_pass,
        hard_pass=hard_pass,
        episodes=_runs(above),
        max_overshoot_a=float(excess.max()),
        max_overshoot_pct=float(over_pct.max()),
        overshoot_integral_as=integral_as,
        overshoot_kwh=integral_as * voltage / 3.6e6,
        time_above_band_s=float(above.sum() * window_s),
        worst_settling_s=None if len(known) < len(settle_times) else (max(known) if known else 0.0),
        settled_fraction=(
            sum(1 for s, lim_s in zip(settle_times, settle_limits) if s is not None and s <= lim_s + 1e-9) / len(settle_times)
        ) if settle_times else 1.0,
        settling_s=settling_s,
        steady_violation_s=float(steady_bad.sum() * window_s),
        longest_above_s=longest,
        events=event_rows,
        first_failure_s=min(failures) if failures else None,
        sustained_pass=True if sustained is None else sustained[0],
        sustained_excess_a=None if sustained is None else sustained[1],
        sustained_allowed_a=None if sustained is None else sustained[2],
        breaker_a=breaker,
    )


def _sustained(t: NDArray[np.float64], current: NDArray[np.float64], limit: NDArray[np.float64],
               steady: NDArray[np.bool_], alpha: float, window_s: float) -> tuple[bool, float, float, float] | None:
    """The sustained-excess criterion over the runs of consecutive steady windows: ``(passed, worst mean
    above the limit [A], what that span's limit allowed [A], start of the first failing span (or of the
    worst) [s])``; ``None`` when no steady run lasts ``SUSTAINED_S``."""
    span = int(round(SUSTAINED_S / window_s))
    worst: tuple[float, float, float, float] | None = None  # (mean above the allowance, mean excess, allowed, start)
    first_failure: float | None = None
    edges = np.flatnonzero(np.diff(np.concatenate(([0], steady.astype(int), [0]))))
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start < span:
            continue
        zero = np.zeros((1, current.shape[1]))
        excess = np.cumsum(np.vstack([zero, current[start:end] - limit[start:end]]), axis=0)
        allowed = np.cumsum(np.vstack([zero, alpha * limit[start:end]]), axis=0)
        mean_excess = (excess[span:] - excess[:-span]) / span  # (spans, phases): each span's mean
        mean_allowed = (allowed[span:] - allowed[:-span]) / span
        over = mean_excess - mean_allowed
        k, phase = np.unravel_index(int(np.argmax(over)), over.shape)
        if worst is None or over[k, phase] > worst[0]:
            worst = (float(over[k, phase]), float(mean_excess[k, phase]), float(mean_allowed[k, phase]), float(t[start + k]))
        failing = np.nonzero((over > 1e-9).any(axis=1))[0]
        if first_failure is None and len(failing):
            first_failure = float(t[start + failing[0]])
    if worst is None:
        return None
    return first_failure is None, worst[1], worst[2], worst[3] if first_failure is None else first_failure


def _transient_failure(t: NDArray[np.float64], excess: NDArray[np.float64], allowance: NDArray[np.float64],
                       window_s: float, at: float) -> float:
    """When a failing transient window went wrong: where its overshoot integral outgrew the allowance (or,
    for a rise above the old band, the event itself) [s]."""
    grown = np.nonzero((np.cumsum(excess, axis=0) * window_s > allowance + 1e-9).any(axis=1))[0]
    return float(t[grown[0]]) if len(grown) else at


def _run_start(flags: NDArray[np.bool_], length: int) -> int:
    """Index at which the first run of ``length`` consecutive True values is complete."""
    run = 0
    for k, f in enumerate(flags):
        run = run + 1 if f else 0
        if run >= length:
            return k
    return len(flags) - 1


def _runs(flags: NDArray[np.bool_]) -> int:
    """Number of runs of consecutive True."""
    if flags.size == 0:
        return 0
    return int(flags[0]) + int(np.count_nonzero(flags[1:] & ~flags[:-1]))


def _longest_run(flags: NDArray[np.bool_]) -> int:
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best
