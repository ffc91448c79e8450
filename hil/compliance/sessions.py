"""What a site owes every session, beside the limit: the minimum-current rule and service.

Pure functions on a run's per-step arrays (the control steps of a rig run: set points, port currents, which
sessions want energy), each returning a ``Rule``: the requirement, its source, what was measured against
what was allowed, and when it first failed.

- **Minimum current** (IEC 61851-1: a pilot offers no current or at least 6 A; below 6 A the EVSE cannot
  offer a valid current and must pause): every set point a port is given is 0 or at least 6 A.
- **Service**: a session that wants energy is not kept waiting while the site idles. Whenever the controller
  serves no port on any phase the session would use, the site has room there for the minimum current and a
  reserve (the limit less the reference meter's current is at least 6 A, plus the band's margin, plus
  ``RESERVE_FRACTION`` of the limit and ``RESERVE_A`` that a controller may keep back as it likes), and the
  session has no set point, the controller has ``service_s`` (the architecture's settling time plus
  ``SESSION_START_S``, a charger's own start of a session) to give it current. A port counts as served
  while its set point is at least 6 A and its EV drew within the last ``FINISHED_S`` (or the set point is
  younger than that): a controller that keeps allocating an EV that has long stopped drawing (full, or gone
  dark) serves nobody. Allocation order is the product's: a sequential site that serves one session at a
  time passes, a site that leaves a session waiting while it serves nobody does not. Spans in which a fault
  lets a legal controller pause every session (its site meter gone or wrong, its bus to the chargers lossy)
  are not judged, up to the recovery time after the fault clears.

Units: seconds, A per phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from hil.compliance.check import ALPHA, BETA_A

MIN_CURRENT_A = 6.0
"""IEC 61851-1: the lowest current a pilot can offer [A]."""
RESOLUTION_A = 0.05
"""Set points this close to 0 or to 6 A count as 0 or 6 A (OCPP's 0.1 A steps, rounding) [A]."""
DRAWING_A = 1.0
"""A port drawing more than this is charging [A]."""
RESERVE_FRACTION = 0.1
RESERVE_A = 3.0
"""What a controller may hold back beyond the band's margin before an idle site counts as having room for a
waiting session: 10 % of the limit plus 3 A (a design's safety margin is its own)."""
FINISHED_S = 60.0
"""An allocated EV that has drawn nothing for this long no longer counts as served: the time the reference's
sequential controller takes to see that its session has finished (measured current under 1 A for 60 s) [s]."""
SESSION_START_S = 10.0
"""Added to the settling time for service: a charger's own start of a session (authorisation, the transaction,
the EV's handshake) before any set point can apply [s]."""
RECOVERY_S = 60.0
"""After a fault that lets a controller pause every session clears, the controller has this long (plus its
settling time) to serve sessions again: the reference's 60 s of healthy data before leaving its fallback [s]."""


@dataclass(frozen=True)
class Rule:
    """The outcome of one requirement on a run: ``measured`` [``unit``] against its limits."""

    requirement: str
    source: str
    passed: bool
    measured: float
    unit: str
    low: float | None
    high: float | None
    detail: str
    """What was measured, in words, naming the port and the time (empty when there was nothing to judge)."""
    first_failure_s: float | None = None

    def message(self) -> str:
        return f"{self.requirement} ({self.source}): {self.detail}"


def minimum_current(t: ArrayLike, setpoint_a: ArrayLike) -> Rule:
    """The minimum-current rule on the set points ``setpoint_a`` (steps, ports) [A per phase] given at
    times ``t`` (steps,) [s]. ``measured``: the lowest nonzero set point [A] (``inf`` when none)."""
    times = np.asarray(t, dtype=float)
    sp = np.asarray(setpoint_a, dtype=float)
    on = sp > RESOLUTION_A
    low = on & (sp < MIN_CURRENT_A - RESOLUTION_A)
    lowest = float(sp[on].min()) if on.any() else float("inf")
    source = "IEC 61851-1, minimum pilot current"
    name = "minimum current: a set point is 0 or at least 6 A"
    if not low.any():
        return Rule(name, source, True, lowest, "A", MIN_CURRENT_A - RESOLUTION_A, None, "")
    k, p = np.argwhere(low)[0]
    steps = int(low[:, p].sum())
    dt = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    detail = (f"port {p + 1} was set to {sp[k, p]:.1f} A at {times[k]:.0f} s ({steps * dt:.0f} s below 6 A in all; "
              f"lowest nonzero set point {lowest:.1f} A); a pilot offers 0 or at least 6 A")
    return Rule(name, source, False, lowest, "A", MIN_CURRENT_A - RESOLUTION_A, None, detail, float(times[k]))


def service(t: ArrayLike, setpoint_a: ArrayLike, port_a: ArrayLike, wanting: ArrayLike, port_phases: ArrayLike,
            limit_a: ArrayLike, site_a: ArrayLike, service_s: float,
            excused: Sequence[tuple[float, float]] = ()) -> Rule:
    """The service rule. Per control step ``t`` (steps,) [s]: each port's set point and measured current
    (steps, ports) [A per phase], whether its session wants energy (steps, ports), each port's phases
    (ports, 3) as 0/1, and the site's limit and reference-meter current per phase (steps, 3) [A].
    ``excused``: (start, end) spans [s] not judged. ``measured``: the longest a session waited while the
    site idled with room for it [s]."""
    times = np.asarray(t, dtype=float)
    sp = np.asarray(setpoint_a, dtype=float)
    want = np.asarray(wanting, dtype=bool)
    b = np.asarray(port_phases, dtype=float)
    limit, site = np.asarray(limit_a, dtype=float), np.asarray(site_a, dtype=float)
    served = _served(times, sp >= MIN_CURRENT_A - RESOLUTION_A, np.asarray(port_a, dtype=float) > DRAWING_A)
    allocated = served.astype(float) @ b  # (steps, 3): ports served, per phase
    room = limit - site - (MIN_CURRENT_A + (ALPHA + RESERVE_FRACTION) * limit + BETA_A + RESERVE_A)  # (steps, 3)
    judged = np.ones(len(times), dtype=bool)
    for start, end in excused:
        judged &= ~((times >= start) & (times < end))
    name = "service: no session waits while the site idles with room for it"
    source = "evhil service rule (the settling time of the architecture, IEC 61851-1 minimum current)"
    worst, worst_at, worst_port = 0.0, None, -1
    dt = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    for p in range(sp.shape[1]):
        used = b[p] > 0
        if not used.any():
            continue
        idle = (allocated[:, used] == 0).all(axis=1) & (room[:, used] >= 0).all(axis=1)
        waiting = judged & want[:, p] & idle & (sp[:, p] < MIN_CURRENT_A - RESOLUTION_A)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], waiting.astype(int), [0]))))
        for start, end in zip(edges[::2], edges[1::2]):
            span = float(times[end - 1] - times[start]) + dt
            if span > worst:
                worst, worst_at, worst_port = span, float(times[start]), p
    if worst <= service_s + 1e-9:
        detail = "" if worst == 0 else f"the longest wait with the site idle was {worst:.0f} s (port {worst_port + 1})"
        return Rule(name, source, True, worst, "s", None, service_s, detail)
    detail = (f"the session at port {worst_port + 1} waited {worst:.0f} s from {worst_at:.0f} s with no set point while "
              f"no port was served on its phases and the site had room for 6 A and a reserve; allowed {service_s:g} s")
    return Rule(name, source, False, worst, "s", None, service_s, detail,
                None if worst_at is None else worst_at + service_s)


def _served(t: np.ndarray, given: np.ndarray, drawing: np.ndarray) -> np.ndarray:
    """(steps, ports): the port has a set point of at least 6 A (``given``) and its EV drew (``drawing``)
    within the last ``FINISHED_S``, or the set point is younger than that."""
    out = np.zeros_like(given)
    last = np.full(given.shape[1], -np.inf)  # per port: when it last drew, or when its set point was given
    for k in range(len(t)):
        started = given[k] & ~(given[k - 1] if k else np.zeros_like(given[k]))
        last = np.where(drawing[k] | started, t[k], last)
        out[k] = given[k] & (t[k] - last <= FINISHED_S)
    return out
