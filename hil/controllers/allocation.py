"""Per-phase current allocation: max-min fair progressive filling, weights, the 6 A floor with admission.

Every reference controller ends here: given each port's upper bound ``caps`` [A per phase], which phases
it draws from (``phases``, an ``(n, 3)`` 0/1 matrix learned from metering) and the headroom per phase
``headroom`` [A], return set points that never exceed a phase's headroom or a port's cap. Vectorised with
numpy (see ``benchmarks/bench_dispatch.py``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

MIN_CURRENT_A = 6.0
"""IEC 61851-1: below 6 A an EVSE cannot offer a valid current and must pause."""
RESOLUTION_A = 0.1
"""Set-point resolution (OCPP 0.1 A)."""

Array = NDArray[np.float64]


def water_fill(caps: ArrayLike, phases: ArrayLike, headroom: ArrayLike, weights: ArrayLike | None = None) -> Array:
    """Max-min fair (weighted) progressive filling.

    Raise every port at ``weights x lambda`` until it reaches its cap or a phase it draws from runs out of
    headroom; freeze those, continue with the rest. Returns rates [A] with
    ``sum_i phases[i, p] * rate[i] <= headroom[p]`` and ``0 <= rate <= caps``.
    """
    u = np.maximum(np.asarray(caps, dtype=float), 0.0)
    n = len(u)
    on = np.ascontiguousarray(np.asarray(phases, dtype=float).reshape(n, -1).T > 0)  # (phases, ports)
    h = np.maximum(np.asarray(headroom, dtype=float), 0.0)
    w = np.ones(n) if weights is None else np.maximum(np.asarray(weights, dtype=float), 1e-12)
    rate = np.zeros(n)
    active = (u > 0) & on.any(axis=0)
    if not active.any():
        return rate
    # Work in the order of the ports' breakpoints (where w x lambda reaches the cap), sorted once: each
    # phase's level is then read off its ports in that order without sorting again.
    order = np.argsort(u / w, kind="stable")
    u, w, on, active = u[order], w[order], on[:, order], active[order]
    draws = on.astype(float)
    breaks = u / w
    left = h.copy()
    filled = np.zeros(n)
    for _ in range(len(h) + 1):
        level = np.array([_level(u[sel], w[sel], breaks[sel], left[p]) for p, sel in enumerate(on & active)])
        lam = float(level.min())
        if np.isinf(lam):  # nothing binds: everyone gets their cap
            filled[active] = u[active]
            break
        fill = np.minimum(u, w * lam)
        freeze = active & (on[int(level.argmin())] | (fill >= u - 1e-12))
        filled[freeze] = fill[freeze]
        left = np.maximum(left - draws @ np.where(freeze, fill, 0.0), 0.0)
        active &= ~freeze
        if not active.any():
            break
    rate[order] = filled
    return rate


def _level(u: Array, w: Array, c: Array, h: float) -> float:
    """Largest lambda with sum(min(u, w lambda)) <= h (inf if all caps fit), for ports sorted by their
    breakpoints ``c = u / w``."""
    if not len(u) or u.sum() <= h:
        return float("inf")
    capped = np.cumsum(u) - u  # sum of caps below breakpoint k
    rest_w = np.cumsum(w[::-1])[::-1]  # weights still rising at breakpoint k
    at_break = capped + c * rest_w  # f(c_k)
    k = min(int(np.searchsorted(at_break, h, side="right")), len(c) - 1)  # first breakpoint beyond h
    return float((h - capped[k]) / rest_w[k])


def quantise(rates: ArrayLike, caps: ArrayLike | None = None, minimum: float = MIN_CURRENT_A, step: float = RESOLUTION_A) -> Array:
    """The 6 A quantiser: 0 below ``minimum``, else rounded down to ``step`` (and never above ``caps``)."""
    r = np.asarray(rates, dtype=float)
    if caps is not None:
        r = np.minimum(r, caps)
    q = np.floor(r / step + 1e-9) * step
    return np.where(q + 1e-9 >= minimum, q, 0.0)


def admit(order: ArrayLike, phases: ArrayLike, headroom: ArrayLike, caps: ArrayLike, minimum: float = MIN_CURRENT_A) -> NDArray[np.bool_]:
    """Which ports can get at least ``minimum`` A, taken greedily in ``order`` (priority or rotation).

    A port is admitted if ``minimum`` on each of its phases still fits; a port that does not fit is
    skipped, not the end of the queue (a single-phase EV may fit where a three-phase one did not).
    """
    on = np.ascontiguousarray(np.asarray(phases, dtype=float).T > 0)  # (phases, ports)
    u = np.asarray(caps, dtype=float)
    phase_bit = 1 << np.arange(on.shape[0])
    bits = phase_bit @ on  # each port's phases as bits
    slots = np.floor(np.asarray(headroom, dtype=float) / minimum + 1e-9)  # ports each phase can carry at minimum
    queue = np.asarray(order, dtype=int)
    queue = queue[u[queue] >= minimum]
    admitted = np.zeros(len(u), dtype=bool)
    used = np.zeros(on.shape[0])
    full = 0  # bits of the phases that are full
    # Walk the queue in vectorised stretches: admit the longest prefix that fits; the first port that does
    # not fit fills at least one phase; drop every later port on a full phase and go on (at most one
    # stretch per phase).
    while len(queue):
        if full:
            queue = queue[(bits[queue] & full) == 0]
            if not len(queue):
                break
        counts = used[:, None] + np.cumsum(on[:, queue], axis=1)
        over = (counts > slots[:, None]).any(axis=0)
        stop = int(np.argmax(over)) if over.any() else len(queue)
        admitted[queue[:stop]] = True
        if stop:
            used = counts[:, stop - 1]
        if stop == len(queue):
            break
        full |= int(phase_bit @ (used + on[:, queue[stop]] > slots))
        queue = queue[stop + 1:]
    return admitted


def equal_share(caps: ArrayLike, phases: ArrayLike, headroom: ArrayLike, order: ArrayLike | None = None,
                weights: ArrayLike | None = None, minimum: float = MIN_CURRENT_A, step: float = RESOLUTION_A) -> Array:
    """Equal (or weighted) share with the 6 A floor: admit what fits at 6 A in ``order``, fill the rest fairly,
    quantise. Every port gets 0 or at least ``minimum``; no phase exceeds its headroom."""
    u = np.asarray(caps, dtype=float)
    b = np.asarray(phases, dtype=float).reshape(len(u), -1)
    h = np.asarray(headroom, dtype=float)
    sequence = np.arange(len(u)) if order is None else order
    admitted = admit(sequence, b, h, u, minimum)
    rate = np.zeros_like(u)
    if admitted.any():
        wt = None if weights is None else np.asarray(weights, dtype=float)[admitted]
        rate[admitted] = water_fill(u[admitted], b[admitted], h, wt)
    return quantise(rate, u, minimum, step)
