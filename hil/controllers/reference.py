"""The reference controllers: plain plug-in, sequential (and its timer variant), parallel (and weighted),
and the registry of every reference controller by name (the adaptive ones live in ``adaptive``, the
cloud-managed architecture in ``cloud``, V2G export in ``v2g``).

- ``PlainPlugIn``: every EV gets its maximum; no coordination. The negative control.
- ``Sequential``: one session at a time in first-come or earliest-deadline order; the head gets what the
  headroom allows (0 below 6 A). ``slot_s`` set: the head rotates every slot (timer load sharing).
- ``Parallel``: equal share by progressive filling per phase with the 6 A floor; when the headroom cannot
  give every EV 6 A, admission rotates every ``rotate_s``. ``weights`` by port give the priority variant
  (``priority``: ``priority_weights``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hil.controllers.allocation import MIN_CURRENT_A, equal_share, quantise
from hil.controllers.observation import Array, Budget, Controller, Decision, Headroom, Observation, frozen
from hil.site.scenarios import Scenario


@dataclass
class PlainPlugIn:
    name: str = "plain"
    architecture: str = "plain"

    def decide(self, obs: Observation) -> Decision:
        return Decision(np.where(obs.connected, obs.ev_max_a, 0.0))


@dataclass
class Sequential:
    """One session at a time. ``order``: ``fcfs`` (arrival) or ``edf`` (departure).

    The queue is kept while the caps and the order key stay the same, and the head's set points while the
    budget (the shell's, shared while unchanged) and the head stay the same: the usual step decides
    nothing new.
    """

    order: str = "fcfs"
    slot_s: float | None = None
    unmanaged_max_a: float = 0.0
    name: str = "sequential"
    architecture: str = "local"
    _shell: Headroom = field(init=False)
    _head: int | None = field(default=None, init=False)
    _since: float = field(default=0.0, init=False)
    _queue_for: tuple[Array, bytes] | None = field(default=None, init=False)
    _queue: list[int] = field(default_factory=list, init=False)
    _queued: set[int] = field(default_factory=set, init=False)
    """The ports waiting, in order, (and as a set) for the caps and order key ``_queue_for``."""
    _rates_for: tuple[Budget, int] | None = field(default=None, init=False)
    _rates: Array | None = field(default=None, init=False)
    """The set points [A per phase] for the budget and head ``_rates_for``."""

    def __post_init__(self) -> None:
        if self.order not in ("fcfs", "edf"):
            raise ValueError(f"order must be fcfs or edf, not {self.order!r}")
        self._shell = Headroom(self.unmanaged_max_a)
        if self.slot_s is not None:
            self.architecture = "timer"

    def decide(self, obs: Observation) -> Decision:
        budget = self._shell(obs)
        queue = self._waiting(budget.caps_a, obs.arrival if self.order == "fcfs" else obs.departure)
        if not queue:
            self._head = None
            return self._shell.issue(np.zeros(len(obs.connected)))
        head = self._head
        if head not in self._queued:
            head, self._since = queue[0], obs.time
        elif self.slot_s is not None and obs.time - self._since >= self.slot_s and len(queue) > 1:
            head, self._since = queue[(queue.index(head) + 1) % len(queue)], obs.time
        self._head = head
        if self._rates_for is None or self._rates_for[0] is not budget or self._rates_for[1] != head:
            used = budget.phases[head] > 0
            room = float(budget.headroom_a[used].min()) if used.any() else 0.0
            rates = np.zeros(len(obs.connected))
            rates[head] = quantise(min(budget.caps_a[head], room))
            self._rates_for, self._rates = (budget, head), frozen(rates)
        assert self._rates is not None
        return self._shell.issue(self._rates)

    def _waiting(self, caps: Array, key: Array) -> list[int]:
        """The ports wanting energy, by ``key`` (arrival or departure [s]; ties by port)."""
        key_bytes = key.tobytes()
        if self._queue_for is None or self._queue_for[0] is not caps or self._queue_for[1] != key_bytes:
            waiting = np.nonzero(caps > 0)[0]
            self._queue = waiting[np.argsort(key[waiting], kind="stable")].tolist()
            self._queued, self._queue_for = set(self._queue), (caps, key_bytes)
        return self._queue


@dataclass
class Parallel:
    """Equal share with the 6 A floor; admission rotates every ``rotate_s`` when not everyone fits.

    What follows from the budget alone (whether everyone fits at 6 A, whether the last fill still holds) is
    kept for the budget (the shell's, shared while unchanged): the usual step fills nothing.
    """

    rotate_s: float = 900.0
    weights: Array | None = None
    unmanaged_max_a: float = 0.0
    name: str = "parallel"
    architecture: str = "local"
    _shell: Headroom = field(init=False)
    _pointer: int = field(default=0, init=False)
    _rotated: float = field(default=0.0, init=False)
    _last: tuple[Array, Array, Array, int, Array] | None = field(default=None, init=False)
    """The last fill: its caps, phases, headroom, rotation pointer and rates."""
    _crowded_for: tuple[Budget, int, bool] | None = field(default=None, init=False)
    """A budget, how many ports want at least 6 A under it, and whether they do not all fit at 6 A."""
    _holds_for: tuple[Budget, int] | None = field(default=None, init=False)
    """A budget and rotation pointer under which the last fill holds."""

    def __post_init__(self) -> None:
        self._shell = Headroom(self.unmanaged_max_a)

    def decide(self, obs: Observation) -> Decision:
        budget = self._shell(obs)
        headroom, caps, phases = budget.headroom_a, budget.caps_a, budget.phases
        n = len(obs.connected)
        if obs.time - self._rotated >= self.rotate_s:
            if self._crowded_for is None or self._crowded_for[0] is not budget:
                wanting = int(np.count_nonzero(caps >= MIN_CURRENT_A))
                crowded = bool(wanting and (phases.T @ (caps > 0) * MIN_CURRENT_A > headroom + 1e-9).any())
                self._crowded_for = (budget, wanting, crowded)  # not all fit at 6 A
            _, wanting, crowded = self._crowded_for
            if crowded:
                self._pointer, self._rotated = (self._pointer + max(1, wanting // 4)) % max(n, 1), obs.time
        last = self._last
        if last is not None and self._holds_for is not None and self._holds_for[0] is budget and self._holds_for[1] == self._pointer:
            return self._shell.issue(last[4])  # the same budget as when it last held
        if (last is not None and last[3] == self._pointer and float(np.abs(last[2] - headroom).max()) <= 0.01
                and np.array_equal(last[0], caps) and np.array_equal(last[1], phases)):
            self._holds_for = (budget, self._pointer)
            return self._shell.issue(last[4])  # same inputs, same answer: skip the fill
        order = np.roll(np.arange(n), -self._pointer)
        rates = equal_share(caps, phases, headroom, order=order, weights=self.weights)
        self._last, self._holds_for = (caps, phases, headroom, self._pointer, rates), (budget, self._pointer)
        return self._shell.issue(rates)


def declared_unmanaged_a(scenario: Scenario) -> float:
    """The worst-case unmanaged load a site declares [A per phase]: the building's base load plus every
    unmanaged-load step the scenario holds (its nameplate). The shell assumes it in fallback."""
    steps = sum(e.fraction for e in scenario.events if e.kind == "unmanaged_step")
    return scenario.unmanaged_a + steps * scenario.limit_a


def priority_weights(ports: int) -> Array:
    """Weights of the priority variant of parallel: port 1 weighs 4, port 2 weighs 2, the others 1 (a site's
    priority classes, e.g. a fleet's duty vehicles first)."""
    return frozen(np.array([4.0, 2.0, *([1.0] * max(ports - 2, 0))])[:ports])


def _cloud(scenario: Scenario) -> Controller:
    from hil.controllers.cloud import CloudManaged

    return CloudManaged(Parallel(unmanaged_max_a=declared_unmanaged_a(scenario)))


def _smart_grid(scenario: Scenario) -> Controller:
    from hil.controllers.v2g import SmartGrid

    return SmartGrid(_adaptive(scenario, cost_aware=False, v2g=True))


def _adaptive(scenario: Scenario, cost_aware: bool, v2g: bool = False) -> Controller:
    """The adaptive controller for ``scenario``; with ``v2g`` it plans the bidirectional EVs' exports for the
    scenario's ``v2g_export`` requests, taken as announced ahead (a flexibility call), so that they
    pre-charge for them (``SmartGrid`` discharges, each EV under its guard)."""
    from hil.controllers.adaptive import Adaptive

    # Cost-aware means the whole tariff: energy at its price and the demand charge on the peak (a scenario
    # is one billing day, so a kW of peak costs the full charge). With a demand charge, energy is valued far
    # above it, so that flattening the peak never costs energy.
    demand = scenario.tariff.demand_per_kw if cost_aware else 0.0
    return Adaptive(tariff=scenario.tariff, start_h=scenario.start_h, quick_weight=1e-3 if cost_aware else 10.0,
                    peak_weight=demand, energy_value=1000.0 if demand > 0 else 1.0,
                    unmanaged_max_a=declared_unmanaged_a(scenario), name="adaptive-cost" if cost_aware else "adaptive",
                    v2g=v2g, exports=tuple(e for e in scenario.events if e.kind == "v2g_export") if v2g else ())


CONTROLLERS: dict[str, Callable[[Scenario], Controller]] = {
    "plain": lambda scenario: PlainPlugIn(),
    "sequential": lambda scenario: Sequential(unmanaged_max_a=declared_unmanaged_a(scenario)),
    "edf": lambda scenario: Sequential(order="edf", unmanaged_max_a=declared_unmanaged_a(scenario), name="edf"),
    "timer": lambda scenario: Sequential(slot_s=3600.0, unmanaged_max_a=declared_unmanaged_a(scenario), name="timer"),
    "parallel": lambda scenario: Parallel(unmanaged_max_a=declared_unmanaged_a(scenario)),
    "priority": lambda scenario: Parallel(weights=priority_weights(scenario.ports),
                                          unmanaged_max_a=declared_unmanaged_a(scenario), name="priority"),
    "cloud": _cloud,
    "adaptive": lambda scenario: _adaptive(scenario, cost_aware=False),
    "adaptive-cost": lambda scenario: _adaptive(scenario, cost_aware=True),
    "smart-grid": _smart_grid,
}
"""Reference controllers by name, built for a scenario (the adaptive ones read its tariff; every one that
coordinates falls back to the scenario's declared worst-case unmanaged load)."""
