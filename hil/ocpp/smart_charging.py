"""OCPP smart charging: installed charging profiles, stacking and composite schedules.

Pure functions and frozen dataclasses, no I/O.  Profiles arrive as OCPP-J dicts (camelCase, as on
the wire) for OCPP 1.6 (``csChargingProfiles``) or 2.0.1 (``chargingProfile``) and are normalised
by :func:`profile_from_ocpp` into one :class:`ChargingProfile` shape.

Units: times are aware :class:`datetime` values (naive input is taken as UTC), offsets and
durations are seconds, limits are per-phase amperes (``"A"``) or total watts (``"W"``).

How the composite limit at an instant ``t`` is formed for connector ``c`` (``c > 0``):

* Each purpose has a *leading* profile: the highest stack level that is valid at ``t``
  (``validFrom <= t < validTo``) and whose schedule has a period covering ``t``.
* Station maximum (1.6 ``ChargePointMaxProfile`` / 2.0.1 ``ChargingStationMaxProfile``, connector 0)
  and external constraints (2.0.1, connector 0 and connector ``c``, each stack separately) cap.
* Transaction limit: if a TxProfile of the transaction is valid at ``t`` it replaces the
  TxDefaultProfile stack entirely at ``t`` -- even after its schedule has run out (then the
  transaction is unconstrained by Tx limits), which is what OCTT TC_066_CS expects.  Otherwise
  the TxDefaultProfile stack applies: the connector's own profiles plus those on connector 0,
  where a connector-specific profile shadows the connector-0 one of the same stack level.
* The composite is the minimum over those, also capped by ``max_limit`` (the connector's local
  hardware limit) when given.  No constraint at all is ``None`` (unconstrained).

For connector 0 only station-level limits (station maximum, external constraints on 0) apply.
The station maximum is the limit for all connectors together; sharing it between connectors is
the caller's concern, here it simply caps each connector. What a GetCompositeSchedule for connector /
EVSE 0 reports (the whole station's expected consumption) is :func:`grid_composite`: the sum of the
connectors' composites, capped by the station-level one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Literal

Unit = Literal["A", "W"]
TransactionId = str | int


class Purpose(str, Enum):
    """Charging profile purpose, version independent."""

    STATION_MAX = "StationMax"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"
    EXTERNAL = "ChargingStationExternalConstraints"


_PURPOSES: dict[str, Purpose] = {
    "ChargePointMaxProfile": Purpose.STATION_MAX,
    "ChargingStationMaxProfile": Purpose.STATION_MAX,
    "TxDefaultProfile": Purpose.TX_DEFAULT,
    "TxProfile": Purpose.TX,
    "ChargingStationExternalConstraints": Purpose.EXTERNAL,
}
_RECURRENCE_S = {"Daily": 86_400, "Weekly": 7 * 86_400}
_KINDS = ("Absolute", "Recurring", "Relative")


def purpose_from_ocpp(name: str | Purpose) -> Purpose:
    """Map an OCPP purpose name of either version (or a :class:`Purpose`) to :class:`Purpose`."""
    if isinstance(name, Purpose):
        return name
    try:
        return _PURPOSES[name]
    except KeyError:
        return Purpose(name)  # raises ValueError for unknown names


def parse_datetime(value: str | datetime | None) -> datetime | None:
    """Parse an OCPP ISO-8601 timestamp (``Z``, offsets, fractions); naive values are UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def format_datetime(value: datetime) -> str:
    """Format as OCPP UTC timestamp ``YYYY-MM-DDTHH:MM:SS[.mmm]Z``."""
    value = parse_datetime(value).astimezone(timezone.utc)  # type: ignore[union-attr]
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


@dataclass(frozen=True)
class SchedulePeriod:
    """One schedule period: starts ``start_s`` seconds after the schedule start."""

    start_s: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True)
class ChargingSchedule:
    """A schedule: periods in ``unit``, optional ``duration_s`` (s) and absolute ``start``."""

    periods: tuple[SchedulePeriod, ...]
    unit: Unit
    duration_s: int | None = None
    start: datetime | None = None
    min_charging_rate: float | None = None
    id: int | None = None


@dataclass(frozen=True)
class ChargingProfile:
    """An installed charging profile, normalised from OCPP 1.6 or 2.0.1."""

    id: int
    stack_level: int
    purpose: Purpose
    kind: str
    schedules: tuple[ChargingSchedule, ...]
    recurrency: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: TransactionId | None = None
    connector: int = 0
    version: str = "1.6"

    @property
    def schedule(self) -> ChargingSchedule:
        """The schedule the station executes: the first one (2.0.1 may offer up to three to an
        ISO 15118 EV; choosing among them is outside this module)."""
        return self.schedules[0]

    def valid_at(self, t: datetime) -> bool:
        """True if ``validFrom <= t < validTo`` (open ends when absent)."""
        return (self.valid_from is None or self.valid_from <= t) and (
            self.valid_to is None or t < self.valid_to)


def _schedule_from_ocpp(raw: dict[str, Any]) -> ChargingSchedule:
    periods = tuple(
        SchedulePeriod(int(p["startPeriod"]), float(p["limit"]), p.get("numberPhases"))
        for p in raw["chargingSchedulePeriod"])
    return ChargingSchedule(
        periods=periods, unit=raw["chargingRateUnit"], duration_s=raw.get("duration"),
        start=parse_datetime(raw.get("startSchedule")), min_charging_rate=raw.get("minChargingRate"),
        id=raw.get("id"))


def profile_from_ocpp(payload: dict[str, Any], version: str, connector: int = 0) -> ChargingProfile:
    """Normalise a 1.6 ``csChargingProfiles`` or 2.0.1 ``chargingProfile`` dict.

    ``connector`` is the connectorId / evseId of the SetChargingProfile request (0 = station).
    """
    if version == "1.6":
        pid, raw = payload["chargingProfileId"], [payload["chargingSchedule"]]
    elif version == "2.0.1":
        pid, raw = payload["id"], payload["chargingSchedule"]
        raw = [raw] if isinstance(raw, dict) else raw
    else:
        raise ValueError(f"unsupported OCPP version {version!r}")
    kind = payload["chargingProfileKind"]
    if kind not in _KINDS:
        raise ValueError(f"unknown chargingProfileKind {kind!r}")
    return ChargingProfile(
        id=int(pid), stack_level=int(payload["stackLevel"]),
        purpose=purpose_from_ocpp(payload["chargingProfilePurpose"]), kind=kind,
        schedules=tuple(_schedule_from_ocpp(s) for s in raw),
        recurrency=payload.get("recurrencyKind"),
        valid_from=parse_datetime(payload.get("validFrom")),
        valid_to=parse_datetime(payload.get("validTo")),
        transaction_id=payload.get("transactionId"), connector=connector, version=version)


def _same_tx(a: TransactionId | None, b: TransactionId | None) -> bool:
    return a is None or b is None or str(a) == str(b)


class ProfileStore:
    """Installed profiles per connector (0 = station) with the OCPP install/clear rules.

    The optional limits mirror the configuration keys ChargeProfileMaxStackLevel,
    ChargingScheduleMaxPeriods, MaxChargingProfilesInstalled and
    ChargingScheduleAllowedChargingRateUnit; they are only checked by :meth:`validate_install`.
    """

    def __init__(self, *, max_stack_level: int | None = None, max_periods: int | None = None,
                 max_profiles: int | None = None,
                 allowed_units: tuple[str, ...] = ("A", "W")) -> None:
        self.max_stack_level = max_stack_level
        self.max_periods = max_periods
        self.max_profiles = max_profiles
        self.allowed_units = allowed_units
        self._profiles: list[ChargingProfile] = []

    def __iter__(self) -> Iterator[ChargingProfile]:
        return iter(list(self._profiles))

    def __len__(self) -> int:
        return len(self._profiles)

    def profiles(self, connector: int) -> tuple[ChargingProfile, ...]:
        """Profiles installed on ``connector``, highest stack level first."""
        return tuple(sorted((p for p in self._profiles if p.connector == connector),
                            key=lambda p: -p.stack_level))

    def _replaced_by(self, profile: ChargingProfile) -> list[ChargingProfile]:
        return [p for p in self._profiles if p.id == profile.id or (
            p.connector == profile.connector and p.purpose is profile.purpose
            and p.stack_level == profile.stack_level)]

    def install(self, profile: ChargingProfile,
                connector: int | None = None) -> list[ChargingProfile]:
        """Install ``profile`` (on ``connector`` if given) and return the profiles it replaced.

        A profile with the same id, or the same purpose and stack level on the same connector,
        is replaced.  No validation here: call :meth:`validate_install` first.
        """
        if connector is not None:
            profile = replace(profile, connector=connector)
        old = self._replaced_by(profile)
        self._profiles = [p for p in self._profiles if all(p is not o for o in old)] + [profile]
        return old

    def clear(self, id: int | None = None, connector: int | None = None,
              purpose: str | Purpose | None = None, stack_level: int | None = None) -> int:
        """Remove matching profiles (ClearChargingProfile) and return how many were removed.

        With ``id`` only that profile matches (other criteria ignored, as in both versions);
        otherwise every given criterion must match and no criteria at all clears everything.
        """
        want = purpose_from_ocpp(purpose) if purpose is not None else None

        def hit(p: ChargingProfile) -> bool:
            if id is not None:
                return p.id == id
            return ((connector is None or p.connector == connector)
                    and (want is None or p.purpose is want)
                    and (stack_level is None or p.stack_level == stack_level))

        before = len(self._profiles)
        self._profiles = [p for p in self._profiles if not hit(p)]
        return before - len(self._profiles)

    def end_transaction(self, connector: int) -> int:
        """Drop the TxProfiles of a connector whose transaction has ended; returns the count."""
        return self.clear(connector=connector, purpose=Purpose.TX)

    def validate_install(self, profile: ChargingProfile, connector: int,
                         transaction_id_running: TransactionId | None) -> str | None:
        """Reason to reject a SetChargingProfile for ``connector``, or None if acceptable.

        ``transaction_id_running`` is the transaction active on that connector (None if idle).
        """
        if profile.purpose is Purpose.STATION_MAX and connector != 0:
            return "station maximum profile must be installed on connector 0"
        if profile.purpose is Purpose.EXTERNAL:
            return "external constraints are set locally, not through SetChargingProfile"
        if profile.purpose is Purpose.TX:
            if connector == 0:
                return "TxProfile needs a connector > 0"
            if transaction_id_running is None:
                return "TxProfile without an active transaction on the connector"
            if not _same_tx(profile.transaction_id, transaction_id_running):
                return "TxProfile transactionId does not match the running transaction"
        if profile.stack_level < 0 or (
                self.max_stack_level is not None and profile.stack_level > self.max_stack_level):
            return f"stack level {profile.stack_level} out of range"
        if profile.kind == "Recurring" and profile.recurrency not in _RECURRENCE_S:
            return "Recurring profile needs recurrencyKind Daily or Weekly"
        if profile.valid_from and profile.valid_to and profile.valid_to <= profile.valid_from:
            return "validTo is not after validFrom"
        for s in profile.schedules:
            if s.unit not in self.allowed_units:
                return f"charging rate unit {s.unit!r} not supported"
            if not s.periods or s.periods[0].start_s != 0:
                return "first schedule period must start at 0"
            if any(b.start_s <= a.start_s for a, b in zip(s.periods, s.periods[1:])):
                return "schedule periods must have increasing startPeriod"
            if self.max_periods is not None and len(s.periods) > self.max_periods:
                return f"{len(s.periods)} periods exceed the maximum of {self.max_periods}"
            if any(p.limit < 0 or (p.number_phases is not None and not 1 <= p.number_phases <= 3)
                   for p in s.periods):
                return "negative limit or numberPhases outside 1..3"
        probe = replace(profile, connector=connector)
        if self.max_profiles is not None and (
                len(self) - len(self._replaced_by(probe)) + 1 > self.max_profiles):
            return f"more than {self.max_profiles} profiles installed"
        return None


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class _Query:
    unit: Unit
    voltage: float
    phases: int
    tx_start: datetime | None
    fallback_start: datetime  # anchor for Relative profiles when no transaction is running


def _anchors(prof: ChargingProfile, lo: datetime, hi: datetime, q: _Query) -> list[datetime]:
    """Schedule start instants whose run can overlap ``[lo, hi]``."""
    s = prof.schedule
    if prof.kind == "Recurring" and s.start is not None and prof.recurrency in _RECURRENCE_S:
        period = timedelta(seconds=_RECURRENCE_S[prof.recurrency])
        first, last = math.floor((lo - s.start) / period), math.floor((hi - s.start) / period)
        return [s.start + k * period for k in range(first, last + 1)]
    if prof.kind == "Absolute" and s.start is not None:
        return [s.start]
    # Relative, or a schedule without startSchedule: runs from the start of charging.
    return [q.tx_start or q.fallback_start]


def _period_at(prof: ChargingProfile, t: datetime, q: _Query) -> SchedulePeriod | None:
    """The period in force at ``t``.  A recurring run restarts at the next recurrence, so
    periods (or a duration) beyond the recurrence length are never reached."""
    if not prof.valid_at(t):
        return None
    offset = (t - _anchors(prof, t, t, q)[-1]).total_seconds()
    duration = prof.schedule.duration_s
    if offset < 0 or (duration is not None and offset >= duration):
        return None
    started = [p for p in prof.schedule.periods if p.start_s <= offset]
    return max(started, key=lambda p: p.start_s) if started else None


def _convert(limit: float, unit: str, phases: int, q: _Query) -> float:
    """Convert between per-phase A and total W: ``W = A * V * phases``."""
    if unit == q.unit:
        return limit
    return limit * q.voltage * phases if q.unit == "W" else limit / (q.voltage * phases)


def _leading(stack: list[ChargingProfile], t: datetime,
             q: _Query) -> tuple[float, int | None] | None:
    """(limit in the query unit, numberPhases) of the leading profile of a stack, or None."""
    for prof in stack:  # highest stack level first
        period = _period_at(prof, t, q)
        if period is not None:
            n = period.number_phases or q.phases
            return _convert(period.limit, prof.schedule.unit, n, q), period.number_phases
    return None


@dataclass(frozen=True)
class _Stacks:
    caps: tuple[list[ChargingProfile], ...]  # station max and external constraints
    tx: list[ChargingProfile]
    tx_default: list[ChargingProfile]

    def all(self) -> list[ChargingProfile]:
        return [p for stack in (*self.caps, self.tx, self.tx_default) for p in stack]


def _stacks(store: ProfileStore, connector: int, transaction_id: TransactionId | None) -> _Stacks:
    def of(c: int, purpose: Purpose) -> list[ChargingProfile]:
        return [p for p in store.profiles(c) if p.purpose is purpose]

    caps = [of(0, Purpose.STATION_MAX), of(0, Purpose.EXTERNAL)]
    if connector == 0:
        return _Stacks(tuple(caps), [], [])
    caps.append(of(connector, Purpose.EXTERNAL))
    tx = [p for p in of(connector, Purpose.TX) if _same_tx(p.transaction_id, transaction_id)]
    own = of(connector, Purpose.TX_DEFAULT)
    levels = {p.stack_level for p in own}
    shared = [p for p in of(0, Purpose.TX_DEFAULT) if p.stack_level not in levels]
    tx_default = sorted(own + shared, key=lambda p: -p.stack_level)
    return _Stacks(tuple(caps), tx, tx_default)


def _limit(st: _Stacks, t: datetime, q: _Query,
           max_limit: float | None) -> tuple[float | None, int | None]:
    found = [_leading(stack, t, q) for stack in st.caps]
    tx_active = any(p.valid_at(t) for p in st.tx)
    found.append(_leading(st.tx if tx_active else st.tx_default, t, q))
    limits = [f[0] for f in found if f is not None] + ([max_limit] if max_limit is not None else [])
    if not limits:
        return None, None
    phases = [f[1] for f in found if f is not None and f[1] is not None]
    return min(limits), (min(phases) if phases else None)


@dataclass(frozen=True)
class CompositePeriod:
    """Composite period from ``start_s`` (s after the schedule start); None = unconstrained."""

    start_s: int
    limit: float | None
    number_phases: int | None = None


@dataclass(frozen=True)
class CompositeSchedule:
    """Result of :func:`composite_schedule`: periods ordered by ``start_s``, first at 0."""

    connector: int
    start: datetime
    duration_s: int
    unit: Unit
    periods: tuple[CompositePeriod, ...]

    def period_at(self, offset_s: float) -> CompositePeriod:
        """The period in force ``offset_s`` seconds after :attr:`start`."""
        return [p for p in self.periods if p.start_s <= offset_s][-1]

    def to_ocpp(self, version: str) -> dict[str, Any]:
        """GetCompositeSchedule payload part: 1.6 ``chargingSchedule`` or 2.0.1 ``schedule``.

        Limits are rounded down to 0.1 (OCPP resolution).  Unconstrained spans cannot be
        expressed, so they raise ValueError: pass the connector's ``max_limit`` when computing.
        """
        if any(p.limit is None for p in self.periods):
            raise ValueError("composite has unconstrained spans; compute it with max_limit")
        periods = []
        for p in self.periods:
            limit = math.floor(p.limit * 10 + 1e-6) / 10  # type: ignore[operator]
            item: dict[str, Any] = {"startPeriod": p.start_s, "limit": limit}
            if p.number_phases is not None:
                item["numberPhases"] = p.number_phases
            periods.append(item)
        body = {"chargingRateUnit": self.unit, "chargingSchedulePeriod": periods}
        start = format_datetime(self.start)
        if version == "1.6":
            return {"duration": self.duration_s, "startSchedule": start, **body}
        if version == "2.0.1":
            return {"evseId": self.connector, "duration": self.duration_s, "scheduleStart": start,
                    **body}
        raise ValueError(f"unsupported OCPP version {version!r}")


def composite_schedule(store: ProfileStore, connector: int, start: datetime, duration_s: int,
                       unit: Unit = "A", *, transaction_start: datetime | None = None,
                       transaction_id: TransactionId | None = None, nominal_voltage: float = 230.0,
                       phases: int = 3, max_limit: float | None = None) -> CompositeSchedule:
    """Composite schedule for ``connector`` over ``[start, start + duration_s)``.

    ``unit``: result unit (A per phase or W total); limits in the other unit are converted with
    ``nominal_voltage`` (V) and the period's numberPhases, ``phases`` when absent.
    ``transaction_start`` anchors Relative profiles (``start`` if None).  ``transaction_id``
    selects TxProfiles (None: every TxProfile on the connector counts as the current one).
    ``max_limit`` (in ``unit``) is the connector's local limit, capping everything.
    Each period's ``number_phases`` is the lowest numberPhases stated by the leading periods
    (None if none states one).  Consecutive periods with equal limit and phases are merged;
    offsets are whole seconds.
    """
    start = parse_datetime(start)  # type: ignore[assignment]
    end = start + timedelta(seconds=duration_s)
    q = _Query(unit, nominal_voltage, phases, parse_datetime(transaction_start), start)
    st = _stacks(store, connector, transaction_id)
    points = {start}
    for prof in st.all():
        candidates = [prof.valid_from, prof.valid_to]
        duration = prof.schedule.duration_s
        for anchor in _anchors(prof, start, end, q):
            candidates += [anchor + timedelta(seconds=p.start_s) for p in prof.schedule.periods]
            if duration is not None:
                candidates.append(anchor + timedelta(seconds=duration))
        points.update(c for c in candidates if c is not None and start < c < end)
    periods: list[CompositePeriod] = []
    for t in sorted(points):
        limit, n = _limit(st, t, q, max_limit)
        offset = round((t - start).total_seconds())
        if periods and periods[-1].start_s == offset:
            periods.pop()  # two changes within the same second: the later one stands
        if periods and (periods[-1].limit, periods[-1].number_phases) == (limit, n):
            continue
        periods.append(CompositePeriod(offset, limit, n))
    return CompositeSchedule(connector, start, duration_s, unit, tuple(periods))


def grid_composite(station: CompositeSchedule, evses: list[CompositeSchedule]) -> CompositeSchedule:
    """The composite of the grid connection (2.0.1 evseId 0, 1.6 connectorId 0: "the expected consumption
    of the whole charging station"): at each instant the sum of the EVSEs' composites, capped by
    ``station`` (:func:`composite_schedule` for connector 0, with the grid connection's rating as
    ``max_limit``). So a TxDefaultProfile of 6 A installed on connector 0 of a 4-EVSE station gives 24 A
    here (OCTT 2.0.1 TC_K_22_CS). All inputs share start, duration and unit; an unconstrained (None)
    EVSE makes the sum unconstrained. numberPhases: the station's where stated, else the lowest one stated.
    """
    for c in evses:
        if (c.start, c.duration_s, c.unit) != (station.start, station.duration_s, station.unit):
            raise ValueError("grid_composite: the composites must share start, duration and unit")
    periods: list[CompositePeriod] = []
    for offset in sorted({p.start_s for c in (station, *evses) for p in c.periods}):
        cap = station.period_at(offset)
        parts = [c.period_at(offset) for c in evses]
        total = None if any(p.limit is None for p in parts) else sum(p.limit for p in parts)  # type: ignore[misc]
        limits = [x for x in (cap.limit, total) if x is not None]
        stated = [p.number_phases for p in parts if p.number_phases is not None]
        n = cap.number_phases if cap.number_phases is not None else (min(stated) if stated else None)
        limit = min(limits) if limits else None
        if periods and (periods[-1].limit, periods[-1].number_phases) == (limit, n):
            continue
        periods.append(CompositePeriod(offset, limit, n))
    return CompositeSchedule(0, station.start, station.duration_s, station.unit, tuple(periods))


def limit_at(store: ProfileStore, connector: int, when: datetime, unit: Unit = "A", *,
             transaction_start: datetime | None = None,
             transaction_id: TransactionId | None = None, nominal_voltage: float = 230.0,
             phases: int = 3, max_limit: float | None = None) -> float | None:
    """Composite limit (A per phase or W total) in force at ``when``; None = unconstrained.

    Same rules and parameters as :func:`composite_schedule`; Relative profiles without a
    transaction start are anchored at ``when``.
    """
    when = parse_datetime(when)  # type: ignore[assignment]
    q = _Query(unit, nominal_voltage, phases, parse_datetime(transaction_start), when)
    return _limit(_stacks(store, connector, transaction_id), when, q, max_limit)[0]


# --------------------------------------------------------------------------- enforcement at the meter


LIMIT_SETTLING_S = 10.0
"""How long a charger may take to bring the current under a new limit [s] (the local settling time)."""


def limit_band(limit_a: float) -> float:
    """The highest per-phase current [A] a reference meter may show under a limit of ``limit_a`` [A per phase]:
    limit x 1.02 + 1 A (meter class and the EV's control tolerance), the compliance band of evhil's checks."""
    return limit_a * 1.02 + 1.0


@dataclass
class LimitSettling:
    """Whether the current a connector's reference meter shows settles under a limit: fed the highest phase
    current [A] read at times [s, any monotonic clock] from ``start_s`` (when the limit applied), it holds
    once readings stay within :func:`limit_band` for ``hold_s`` s, reached within ``settling_s`` s.

    ``add`` returns None while undecided, True when the limit is obeyed, False when the settling time ran
    out; ``failure`` then says what was measured against what was allowed.
    """

    limit_a: float
    start_s: float
    settling_s: float = LIMIT_SETTLING_S
    hold_s: float = 2.0
    worst_a: float = 0.0
    """The highest reading outside the band [A]."""
    _within_since: float | None = None

    @property
    def band_a(self) -> float:
        return limit_band(self.limit_a)

    def add(self, t_s: float, current_a: float) -> bool | None:
        if current_a <= self.band_a:
            self._within_since = t_s if self._within_since is None else self._within_since
            if t_s - self._within_since >= self.hold_s:
                return True
        else:
            self._within_since, self.worst_a = None, max(self.worst_a, current_a)
        return False if t_s - self.start_s > self.settling_s else None

    def failure(self) -> str:
        return (f"the connector's meter read up to {self.worst_a:.1f} A per phase for {self.settling_s:g} s under a "
                f"{self.limit_a:g} A limit (band {self.band_a:.1f} A): the limit is not applied")
