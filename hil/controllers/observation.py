"""What a site controller sees and what it decides, and the safety shell every controller shares.

A controller gets an ``Observation`` (port states, EV limits, currents measured by the port meters, the
site meter with its age, the site limit from every source, the price now) and returns a ``Decision``
(per-port current set points). The same controller runs in the in-memory simulator and on a rig through
the drivers: only the code that builds observations differs.

The shell (``Headroom``) turns the observation into per-phase headroom ``H = L - U_hat - margin``: ``L`` the
minimum over limit sources, ``U_hat`` the unmanaged load (site meter minus the ports, smoothed), the margin
``0.02 L + 1 A``. With a stale site meter it assumes the declared worst-case unmanaged load.

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


@dataclass
class Headroom:
    """The safety shell: per-phase headroom from the limit, the unmanaged-load estimate and the margin."""

    unmanaged_max_a: float = 0.0
    """Declared worst-case unmanaged load per phase [A], assumed while the site meter is stale."""
    _estimate: Array | None = field(default=None, repr=False)
    _last: float | None = field(default=None, repr=False)

    def __call__(self, obs: Observation) -> tuple[Array, bool]:
        """Headroom per phase [A] and whether the site meter is unusable (fallback)."""
        limit = obs.limit_a
        stale = obs.site_age_s > STALE_METER_S
        if stale:
            unmanaged = np.full(3, self.unmanaged_max_a)
        else:
            sample = np.maximum(obs.site_a - obs.phases.T @ obs.measured_a, 0.0)
            if self._estimate is None or self._last is None:
                self._estimate = sample
            else:
                k = 1.0 - math.exp(-max(obs.time - self._last, 0.0) / EMA_TAU_S)
                # Rises count at once (safety), falls are smoothed.
                self._estimate = np.maximum(sample, self._estimate + k * (sample - self._estimate))
            unmanaged = self._estimate
        self._last = obs.time
        return np.maximum(limit - unmanaged - (0.02 * limit + 1.0), 0.0), stale
