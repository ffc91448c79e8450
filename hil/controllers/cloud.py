"""Cloud-managed load balancing: the site controller runs at the CSMS and its limits reach the charge points
as OCPP charging profiles.

The decision is any reference controller (``inner``, parallel by default) run on the CSMS side every
``period_s`` and whenever a transaction starts or ends. What differs from local load sharing is the path:

- at boot the CSMS installs a **TxDefaultProfile** (connector 0) of ``default_a``: a new transaction draws
  that until the CSMS has allocated it (0 A: it waits);
- each allocation goes out as a **TxProfile** per running transaction (one period from 0, unit A, no
  duration: in force until replaced or until the transaction ends), limits rounded down to the profile's
  0.1 A;
- **decreases are sent first** and the increases only once every decrease has been answered, so that the
  site never carries old and new allocations at the same time;
- the charge point applies the composite limit when it has accepted the profile.

What a charge point does when it loses the CSMS (F3) is decided at boot, because then nothing can be sent:

- a **ChargePointMaxProfile floor** (connector 0, stack level 0, no expiry) of ``offline_a``, the share of
  the lowest limit the site may ever see (less its unmanaged load) per charge point: all charge points at
  their floor stay inside that lowest limit, on any phase;
- a **ChargePointMaxProfile lease** (connector 0, stack level 1) at the charge point's rating, valid for
  ``lease_s`` from its issue (``validTo``), which lifts the floor while the CSMS is in contact; the CSMS
  renews it at each allocation that finds less than one and a half allocation periods of it left. Without
  the CSMS the lease expires and the station maximum falls back to the floor (the lower stack level): the
  charge point needs no message to become safe. ``lease_s`` (20 s) is a third of the cloud settling time:
  a limit reduction the CSMS cannot deliver is met within it, and even held at the old allocation for the
  whole lease (and the charge point's and the EVs' reaction after it) the overshoot stays inside the
  transient allowance (a linear ramp over the settling time: the whole reduction for half of it). A lease
  lifts a cap: it is sent after the decreases and the increases.

A transaction that starts offline draws the TxDefaultProfile (0 A) until the CSMS is back and allocates
it; a running one keeps its TxProfile, capped by the floor once the lease has expired.

``CloudManaged`` models that path in the fast in-memory loop (decision period, message latency, the
decrease-then-increase order, the TxDefaultProfile for new sessions; no outage, so no floor or lease). ``hil.site.cloud_run`` runs
it for real: evhil's CSMS sends SetChargingProfile over OCPP-J WebSockets to evhil's charge point
emulators, whose connectors are plant ports. Both use ``plan_changes`` and ``tx_profile`` below.

The compliance check gives this architecture the cloud settling time (60 s, ``hil.compliance.SETTLING_S``).

Units: seconds, A per phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from hil.controllers.observation import Array, Controller, Decision, Observation
from hil.ocpp.smart_charging import format_datetime

PROFILE_RESOLUTION_A = 0.1
"""OCPP charging-rate resolution in A (one decimal)."""
TX_DEFAULT_PROFILE_ID = 1
FLOOR_PROFILE_ID = 2
"""The ChargePointMaxProfile a charge point falls back to when its lease expires (stack level 0)."""
LEASE_PROFILE_ID = 3
"""The ChargePointMaxProfile that lifts the floor while the CSMS is in contact (stack level 1, validTo)."""
TX_PROFILE_BASE_ID = 1000
"""TxProfile ids are this plus the connector id (one TxProfile per connector, replaced in place)."""


def quantise_profile(limits_a: Array) -> Array:
    """Limits as a charging profile carries them: rounded down to 0.1 A, never negative [A]."""
    return np.maximum(np.floor(np.asarray(limits_a, dtype=float) / PROFILE_RESOLUTION_A + 1e-9) * PROFILE_RESOLUTION_A, 0.0)


def plan_changes(applied_a: Array, target_a: Array, deadband_a: float = 0.05) -> tuple[Array, Array]:
    """Which ports get a new profile, in two waves: ``(decreases, increases)`` as index arrays.

    ``applied_a`` is what the charge points enforce now, ``target_a`` the new allocation (both [A]).
    Decreases go first; increases only after every decrease was accepted.
    """
    applied, target = np.asarray(applied_a, dtype=float), np.asarray(target_a, dtype=float)
    return np.nonzero(target < applied - deadband_a)[0], np.nonzero(target > applied + deadband_a)[0]


def tx_profile(connector: int, transaction_id: int | None, limit_a: float) -> dict[str, Any]:
    """The OCPP 1.6 ``csChargingProfiles`` of a TxProfile holding ``limit_a`` [A per phase] for the rest of
    transaction ``transaction_id`` (a relative schedule: one period from the transaction start)."""
    profile: dict[str, Any] = {
        "chargingProfileId": TX_PROFILE_BASE_ID + connector, "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(float(limit_a), 1)}]},
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


def tx_default_profile(limit_a: float) -> dict[str, Any]:
    """The TxDefaultProfile a cloud-managed site installs on connector 0 at boot [A per phase]."""
    return {
        "chargingProfileId": TX_DEFAULT_PROFILE_ID, "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(float(limit_a), 1)}]},
    }


def station_max_profile(profile_id: int, stack_level: int, limit_a: float, issued: datetime,
                        valid_to: datetime | None = None) -> dict[str, Any]:
    """A 1.6 ChargePointMaxProfile (connector 0) holding ``limit_a`` [A per phase] from ``issued`` (taken to
    the whole second before, so that a charge point whose clock reads a few microseconds behind already
    sees it in force), until ``valid_to`` when given (the floor: ``FLOOR_PROFILE_ID`` at level 0; the
    lease: ``LEASE_PROFILE_ID`` at 1)."""
    issued = issued.replace(microsecond=0)
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id, "stackLevel": stack_level,
        "chargingProfilePurpose": "ChargePointMaxProfile", "chargingProfileKind": "Absolute",
        "validFrom": format_datetime(issued),
        "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": format_datetime(issued),
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(float(limit_a), 1)}]},
    }
    if valid_to is not None:
        profile["validTo"] = format_datetime(valid_to)
    return profile


def offline_share(lowest_limit_a: float, unmanaged_a: float, charge_points: int) -> float:
    """The floor per charge point [A per phase]: the lowest site limit less the unmanaged load, shared by
    ``charge_points`` and rounded down to the profile resolution (all of them on one phase stay inside)."""
    return float(quantise_profile(np.array([(lowest_limit_a - unmanaged_a) / max(charge_points, 1)]))[0])


@dataclass
class CloudManaged:
    """The in-memory model of cloud-managed load balancing around ``inner``.

    ``period_s``: how often the CSMS re-allocates (and on every transaction start or end) [s];
    ``latency_s``: from a decision until a charge point enforces the profile (CSMS processing, WebSocket
    round trip, the charge point's apply cycle) [s]; increases follow one ``latency_s`` after the
    decreases were accepted. ``default_a``: the TxDefaultProfile limit a new transaction draws until it is
    allocated [A].
    """

    inner: Controller
    period_s: float = 15.0
    latency_s: float = 2.0
    default_a: float = 0.0
    name: str = "cloud"
    architecture: str = "cloud"
    _applied: Array | None = field(default=None, init=False)
    _session: Array | None = field(default=None, init=False)
    _pending: list[tuple[float, Array, Array, Array]] = field(default_factory=list, init=False)
    """(due time, ports, limits, session keys the profiles were meant for)."""
    _next: float = field(default=-np.inf, init=False)
    decisions: int = field(default=0, init=False)
    profiles_sent: int = field(default=0, init=False)

    def decide(self, obs: Observation) -> Decision:
        n = len(obs.connected)
        key = np.where(obs.connected, obs.arrival, -1.0)  # a session is known by its arrival time
        if self._applied is None or len(self._applied) != n:
            self._applied, self._session = np.zeros(n), np.full(n, -1.0)
        assert self._applied is not None and self._session is not None
        # A transaction that ended drops its TxProfile; a new one starts on the TxDefaultProfile.
        changed = key != self._session
        self._applied[changed] = np.where(obs.connected[changed], self.default_a, 0.0)
        self._session = key
        # Profiles that reach the charge points now (only for the transaction they were made for).
        due = [p for p in self._pending if p[0] <= obs.time + 1e-9]
        self._pending = [p for p in self._pending if p[0] > obs.time + 1e-9]
        for _, ports, limits, keys in due:
            same = key[ports] == keys
            self._applied[ports[same]] = limits[same]
        if obs.time >= self._next - 1e-9 or changed.any():  # the period, or a transaction started or ended
            self._allocate(obs, key)
        return Decision(self._applied.copy())

    def _allocate(self, obs: Observation, key: Array) -> None:
        assert self._applied is not None
        self.decisions += 1
        self._next = obs.time + self.period_s
        target = quantise_profile(np.where(obs.connected, self.inner.decide(obs).setpoints_a, 0.0))
        # What the charge points will enforce once the profiles already on their way have arrived.
        expected = self._applied.copy()
        for _, ports, limits, _keys in self._pending:
            expected[ports] = limits
        down, up = plan_changes(expected, target)
        down, up = down[obs.connected[down]], up[obs.connected[up]]
        if len(down):
            self._pending.append((obs.time + self.latency_s, down, target[down], key[down]))
        if len(up):
            self._pending.append((obs.time + (2.0 if len(down) else 1.0) * self.latency_s, up, target[up], key[up]))
        self.profiles_sent += len(down) + len(up)
