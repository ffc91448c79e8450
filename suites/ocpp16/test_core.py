"""OCPP 1.6 Core, charge point under test: boot, sessions, cache, remote actions, reset, unlock,
configuration, meter values, non-happy flows and fault behaviour (OCTT 1.6 §2.1-2.16, 2.23).

evhil plays the Central System; the charge point is driven through the control seam. Offline cases are
in ``test_offline.py``.

Beyond the OCTT validations, steps named "evhil" check requirements of the OCPP 1.6 specification that the
OCTT cases exercise without judging them, each citing its section: that the energy a transaction reports
(meterStart, meterStop, Energy.Active.Import.Register samples) is the energy the rig's meter on the connector
counted (TC_012, TC_068, TC_070, TC_071); that configuration set over the wire is applied, measured on the
wire (TC_021, TC_070, TC_071); and that an availability change asked for during a transaction waits for its
end (TC_012; no OCTT 1.6 case sends ChangeAvailability during a transaction).
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from hil.instruments.energy_meter import EnergyMeter
from hil.ocpp import states16 as st
from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.csms import INVALID_TOKEN, Session, boot_answer
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.rpc import CallError, Frame
from hil.ocpp.smart_charging import parse_datetime

S = st.SETTINGS
C = S.connector
T = S.message_timeout


def _at(payload: dict) -> float:
    return parse_datetime(payload["timestamp"]).timestamp()  # type: ignore[union-attr]


def _spacing(frames: list, interval: float, what: str) -> None:
    for a, b in zip(frames, frames[1:]):
        gap = b.time - a.time
        if abs(gap - interval) > S.max_time_deviation:
            raise ConformanceFailure(f"{what} {gap:.2f} s apart, expected {interval:g} s "
                                     f"(± {S.max_time_deviation:g} s)")


def _sampled(tx: int, context: str) -> dict:
    """Matches the MeterValues of transaction ``tx`` that carry samples of ``context`` (Sample.Periodic,
    Sample.Clock); a charge point may also send others, e.g. Transaction.Begin."""
    return {"transactionId": tx, "meterValue": lambda mvs: any(
        sv.get("context", "Sample.Periodic") == context for mv in mvs for sv in mv["sampledValue"])}


def _not_judged(check: str, reason: str) -> None:
    """An evhil check that finds nothing to measure here: shown as a step and a warning, the case goes on."""
    with step("evhil", f"{check}: not judged, {reason}"):
        warnings.warn(f"{check}: not judged, {reason}", stacklevel=2)


# -- energy accounting against the connector's reference meter ---------------------------------------------
POLL_S = 0.2
"""How often a case reads the import register of the connector's reference meter [s]."""
ENERGY_UNITS = {"Wh": 1.0, "kWh": 1000.0}
"""The units of an energy register value (OCPP 1.6 §7.45) in Wh."""


@dataclass
class ReferenceEnergy:
    """The import register of the rig's meter on the connector's port [Wh], read every ``POLL_S`` s while a case
    runs. A register only grows, so each reading bounds it at other moments: a reading received by time t is
    at most the register at t; one sent at least ``lag`` s (its update cycle) after t is at least that."""

    meter: EnergyMeter
    lag: float
    """[s]: ``Settings.reference_meter_lag``."""
    step_wh: float
    """The register's resolution [Wh]; 0 for a floating-point register."""
    readings: list[tuple[float, float, float]] = field(default_factory=list)
    """(sent, received [wall-clock s since the epoch], register [Wh])."""
    task: asyncio.Future[None] | None = None

    async def poll(self) -> None:
        while True:
            sent = time.time()
            kwh = await self.meter.aread_point("import_energy")
            self.readings.append((sent, time.time(), kwh * 1000.0))
            await asyncio.sleep(POLL_S)

    def lower(self, t: float) -> float:
        """The register at time ``t`` is at least this [Wh] (-inf before the first reading)."""
        return max((wh for _, received, wh in self.readings if received <= t), default=-math.inf)

    def upper(self, t: float) -> float:
        """The register at time ``t`` is at most this [Wh] (inf until a reading is sent ``lag`` s after t)."""
        return min((wh for sent, _, wh in self.readings if sent - self.lag >= t), default=math.inf)

    async def after(self, t: float) -> None:
        """Wait until a reading bounds the register at time ``t`` from above."""
        deadline = time.time() + self.lag + T
        while self.upper(t) == math.inf:
            if self.task is not None and self.task.done():
                self.task.result()  # the meter's error, naming it and its address
            if time.time() > deadline:
                raise ConformanceFailure(f"the connector's reference meter {self.meter.name} was not read for {T:g} s")
            await asyncio.sleep(POLL_S / 2)


@asynccontextmanager
async def _reference_energy(cp: ChargerUnderTest) -> AsyncIterator[ReferenceEnergy | None]:
    """The connector's reference meter read in the background (None: the rig has no meter on its port)."""
    meter = cp.meter(C)
    if meter is None:
        yield None
        return
    point = meter.map.points["import_energy"]
    step_wh = 0.0 if point.type.startswith("float") else point.scale * ENERGY_UNITS.get(point.unit, 1.0)
    ref = ReferenceEnergy(meter, S.reference_meter_lag, step_wh)
    ref.task = asyncio.ensure_future(ref.poll())
    try:
        await ref.after(-math.inf)
        yield ref
    finally:
        ref.task.cancel()
        await asyncio.wait([ref.task])


@dataclass(frozen=True)
class Start:
    """A transaction's meterStart [Wh] and the wall-clock times [s since the epoch] between which the charge
    point read it: before the case started the transaction, and when its StartTransaction arrived."""

    meter_start: int
    since: float
    until: float


async def _metered_charging(cp: ChargerUnderTest) -> tuple[int, Start]:
    """Reusable state Charging; returns the transactionId and the transaction's start."""
    since = time.time()
    tx = await st.charging(cp)
    frame = cp.session.trace.calls("StartTransaction")[-1]
    return tx, Start(int(frame.payload["meterStart"]), since, frame.time)


def _energy_since_start(ref: ReferenceEnergy, start: Start, what: str, reading_wh: float, resolution_wh: float,
                        t_from: float, t_to: float) -> float:
    """``reading_wh``, a register reading of ``resolution_wh`` [Wh] taken between ``t_from`` and ``t_to``, less
    meterStart (whole Wh, OCPP 1.6 §6.45) is the energy the reference meter counted from the transaction's
    start to then, within ``Settings.energy_tolerance`` and the resolution of both. Returns the lowest value
    allowed [Wh]."""
    tolerance = S.energy_tolerance
    counted = reading_wh - start.meter_start
    least = ref.lower(t_from) - ref.upper(start.until)
    most = ref.upper(t_to) - ref.lower(start.since)
    slack = resolution_wh + 1.0 + 2 * ref.step_wh
    low, high = least * (1 - tolerance) - slack, most * (1 + tolerance) + slack
    if not low <= counted <= high:
        raise ConformanceFailure(
            f"{what} counts {counted:.1f} Wh since meterStart ({start.meter_start} Wh); the connector's meter counted "
            f"{max(least, 0.0):.1f} to {most:.1f} Wh from the transaction's start to then (allowed {low:.1f} to "
            f"{high:.1f} Wh: ± {tolerance:.0%} for two class 1 meters, ± {slack:.3g} Wh of resolution)")
    return low


def _register_wh(sv: dict[str, Any]) -> tuple[float, float] | None:
    """An Energy.Active.Import.Register value of the whole connector at its outlet in Wh, with its resolution
    [Wh] (OCPP 1.6 §7.43: unit Wh or kWh, default Wh); None for any other sampled value (another measurand, one
    phase, another location, signed data)."""
    if sv.get("measurand", "Energy.Active.Import.Register") != "Energy.Active.Import.Register":
        return None
    if "phase" in sv or sv.get("location", "Outlet") != "Outlet" or sv.get("format", "Raw") != "Raw":
        return None
    unit = sv.get("unit", "Wh")
    if unit not in ENERGY_UNITS:
        raise ConformanceFailure(f"Energy.Active.Import.Register value {sv['value']} in {unit}, not Wh or kWh "
                                 "(OCPP 1.6 §7.43)")
    try:
        value = Decimal(sv["value"])
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ConformanceFailure(f"Energy.Active.Import.Register value {sv['value']!r} is not a decimal number")
    exponent = value.as_tuple().exponent
    return float(value) * ENERGY_UNITS[unit], 10.0 ** int(exponent) * ENERGY_UNITS[unit]


async def _samples_count_energy(ref: ReferenceEnergy | None, start: Start, frames: list[Frame]) -> None:
    """Every Energy.Active.Import.Register sample of ``frames`` counts, in its unit, the energy the
    connector's meter measured since meterStart (the sample taken within the time deviation of its timestamp,
    and before its frame arrived)."""
    check = "Energy.Active.Import.Register samples against the connector's meter"
    with step("evhil", f"{check}: each counts, in its unit, the energy measured since meterStart "
                       "(OCPP 1.6 §3.16.1, §6.45, §7.43)"):
        if ref is None:
            _not_judged(check, f"the rig has no energy meter on connector {C}'s port")
            return
        judged = 0
        for f in frames:
            for mv in f.payload["meterValue"]:
                t = _at(mv)
                t_to = min(t + S.max_time_deviation, f.time)
                for sv in mv["sampledValue"]:
                    reading = _register_wh(sv)
                    if reading is None:
                        continue
                    await ref.after(t_to)
                    _energy_since_start(ref, start, f"the sample of {mv['timestamp']} ({sv['value']} "
                                        f"{sv.get('unit', 'Wh')})", *reading, t - S.max_time_deviation, t_to)
                    judged += 1
        if not judged:
            _not_judged(check, "the samples have no Energy.Active.Import.Register value of the outlet")


async def _bill_counts_energy(cp: ChargerUnderTest, ref: ReferenceEnergy | None, start: Start, asked: float) -> None:
    """meterStop less meterStart of the last StopTransaction, whose stop was asked for at ``asked``, is the energy
    the connector's meter counted over the transaction."""
    check = "meterStop against the connector's meter"
    with step("evhil", "meterStop - meterStart is the energy the connector's meter counted over the transaction "
                       "(OCPP 1.6 §6.45, §6.49)"):
        if ref is None:
            _not_judged(check, f"the rig has no energy meter on connector {C}'s port")
            return
        stop = cp.session.trace.calls("StopTransaction")[-1]
        await ref.after(stop.time)
        low = _energy_since_start(ref, start, "meterStop", float(stop.payload["meterStop"]), 1.0, asked, stop.time)
        if low <= 0:
            _not_judged(f"{check} (a bill of 0 Wh)", "the connector's meter counted too little energy to tell")


async def _availability_scheduled(cp: ChargerUnderTest, ref: ReferenceEnergy | None) -> float:
    """ChangeAvailability Inoperative during the transaction: Scheduled; then for ``transaction_duration`` s no
    StopTransaction, no Unavailable, and energy keeps flowing. Returns when it was answered."""
    session = cp.session
    watched = len(session.trace.frames)
    await session.call_expect("ChangeAvailability", {"connectorId": C, "type": "Inoperative"}, "Scheduled")
    begin = time.time()
    await session.expect_none("StopTransaction", within=S.transaction_duration)
    end = time.time()
    early = [f for f in session.trace.frames[watched:] if f.is_call and f.direction == "received" and
             f.action == "StatusNotification" and f.payload.get("connectorId") == C and f.payload.get("status") == "Unavailable"]
    if early:
        raise ConformanceFailure("StatusNotification Unavailable while the transaction was running, after "
                                 "ChangeAvailability was answered Scheduled")
    if ref is not None:
        await ref.after(begin)
        counted = ref.lower(end) - ref.upper(begin)
        if counted <= ref.step_wh:
            raise ConformanceFailure(f"the connector's meter counted {max(counted, 0.0):.1f} Wh in the {end - begin:.1f} s "
                                     "after ChangeAvailability was answered Scheduled: the transaction no longer "
                                     "delivers energy")
    return begin


async def _arriving(session: Session, action: str, match: Any, count: int, interval: int, key: str) -> list[Frame]:
    """The next ``count`` CALLs of ``action`` matching ``match``; ``interval`` + T s without one fails, saying that
    ``key`` was set to ``interval`` s."""
    frames = []
    for _ in range(count):
        try:
            frames.append(await session.expect_frame(action, match, timeout=interval + T))
        except ConformanceFailure:
            raise ConformanceFailure(f"no {action} for {interval + T:g} s; {key} was set to {interval} s "
                                     f"(± {S.max_time_deviation:g} s)") from None
    return frames


def _heartbeats_follow(session: Session, since: float, beats: list[Frame], interval: int) -> None:
    """OCPP 1.6 §4.6, §9.1.10: a Heartbeat after at most ``interval`` s without a message from the charge point
    (counted from ``since``); two Heartbeats with no other message between them ``interval`` s apart."""
    deviation = S.max_time_deviation
    previous = since
    for beat in beats:
        sent = [f.time for f in session.trace.calls() if previous < f.time < beat.time]
        silence = beat.time - max([previous, *sent])
        if silence > interval + deviation:
            raise ConformanceFailure(f"a Heartbeat after {silence:.1f} s without a message; HeartbeatInterval was set "
                                     f"to {interval} s (± {deviation:g} s)")
        if previous != since and not sent and silence < interval - deviation:
            raise ConformanceFailure(f"Heartbeat frames {silence:.1f} s apart; HeartbeatInterval was set to "
                                     f"{interval} s (± {deviation:g} s)")
        previous = beat.time


async def _available_everywhere(cp: ChargerUnderTest, expect_unavailable: int | None = None) -> None:
    await cp.session.expect("StatusNotification", {"connectorId": 0}, timeout=T)
    for k in range(1, cp.connectors + 1):
        status = "Unavailable" if k == expect_unavailable else "Available"
        await cp.session.expect("StatusNotification", {"connectorId": k, "status": status}, timeout=T)


# -- 2.1 cold boot -----------------------------------------------------------------------------------------
@octt("TC_001_CS")
async def test_tc_001_cs(cp16: ChargerUnderTest) -> None:
    session = cp16.session
    retry = 2
    session.answer("BootNotification", boot_answer("Rejected", retry))
    session.heartbeat_interval = S.heartbeat_interval
    with step(1, "power on: the charge point sends BootNotification, answered Rejected"):
        await cp16.boot()
        first = await session.expect_frame("BootNotification", timeout=T)
    with step(3, f"BootNotification again after the interval ({retry} s), nothing else before"):
        session.forbid("StatusNotification", "Heartbeat", "Authorize", "StartTransaction", "MeterValues")
        second = await session.expect_frame("BootNotification", timeout=T + retry)
        session.allow("StatusNotification", "Heartbeat", "Authorize", "StartTransaction", "MeterValues")
        if second.time - first.time < retry - S.max_time_deviation:
            raise ConformanceFailure(f"second BootNotification {second.time - first.time:.2f} s after the first; "
                                     f"the Rejected answer asked for {retry} s")
    with step(5, "StatusNotification Available for connector 0 and every connector"):
        await _available_everywhere(cp16)
    with step(7, f"Heartbeat every {S.heartbeat_interval} s (the interval of the Accepted answer)"):
        beats = [await session.expect_frame("Heartbeat", timeout=S.heartbeat_interval + T) for _ in range(2)]
        _spacing(beats, S.heartbeat_interval, "heartbeats")


@octt("TC_002_CS")
async def test_tc_002_cs(cp16: ChargerUnderTest) -> None:
    session = cp16.session
    retry = 2
    session.answer("BootNotification", boot_answer("Pending", retry))
    session.heartbeat_interval = S.heartbeat_interval
    with step(1, "BootNotification answered Pending"):
        await cp16.boot()
        first = await session.expect_frame("BootNotification", timeout=T)
    with step(3, "GetConfiguration without keys while Pending"):
        answer = await session.call("GetConfiguration", {})
        if not answer.get("configurationKey"):
            raise ConformanceFailure(f"GetConfiguration answered {answer} while Pending")
    with step(5, "ChangeConfiguration MeterValueSampleInterval while Pending: Accepted"):
        answer = await session.call("ChangeConfiguration", {"key": "MeterValueSampleInterval",
                                                            "value": str(S.meter_value_sample_interval)})
        if answer["status"] != "Accepted":
            raise ConformanceFailure(f"ChangeConfiguration answered {answer['status']}, expected Accepted")
    with step(7, "BootNotification again after the interval, no other request while Pending (OCPP 1.6 §4.2)"):
        second = await session.expect_frame("BootNotification", timeout=T + retry)
        if second.time - first.time < retry - S.max_time_deviation:
            raise ConformanceFailure(f"second BootNotification {second.time - first.time:.2f} s after the first, "
                                     f"Pending asked for {retry} s")
        pending = [f for f in session.trace.calls() if first.time < f.time < second.time]
        if pending:
            raise ConformanceFailure(f"sent {pending[0].action} while its registration was Pending")
    with step(9, "StatusNotification Available per connector"):
        await _available_everywhere(cp16)
    with step(11, "Heartbeats at the accepted interval"):
        beats = [await session.expect_frame("Heartbeat", timeout=S.heartbeat_interval + T) for _ in range(2)]
        _spacing(beats, S.heartbeat_interval, "heartbeats")


# -- 2.2 start charging session ---------------------------------------------------------------------------------
@octt("TC_003_CS")
async def test_tc_003_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "plug in: StatusNotification Preparing"):
        await cp.control.plug_in(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(3, "present identification: Authorize accepted"):
        await cp.control.present_token(S.valid_id_tag, C)
        await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)
    with step(5, "StartTransaction and StatusNotification Charging (either order)"):
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)


@octt("TC_004_1_CS")
async def test_tc_004_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, MeterValueSampleInterval=S.meter_value_sample_interval)
    await st.authorized(cp)
    with step(2, "plug in: StartTransaction and StatusNotification Charging"):
        await cp.control.plug_in(C)
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)


@octt("TC_004_2_CS")
async def test_tc_004_2_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, ConnectionTimeOut=S.connection_timeout)
    await st.authorized(cp)
    with step(2, f"no cable within ConnectionTimeOut ({S.connection_timeout} s): StatusNotification Available"):
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"},
                             timeout=S.connection_timeout + T)
        await session.expect_none("StartTransaction", within=0.5)


# -- 2.3 stop charging session -------------------------------------------------------------------------------------
@octt("TC_068_CS")
async def test_tc_068_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    async with _reference_energy(cp) as ref:
        _, start = await _metered_charging(cp)
        with step(1, "a different valid idTag: no Authorize, no StopTransaction"):
            session.tokens[S.valid_id_tag_2] = "Accepted"
            await cp.control.present_token(S.valid_id_tag_2, C)
            await session.expect_none("StopTransaction", within=2.0)
            await session.expect_none("Authorize", within=0.1, match={"idTag": S.valid_id_tag_2})
        with step(3, "the starting idTag: StopTransaction with that idTag, StatusNotification Finishing"):
            asked = time.time()
            stop = await st.stop_by_token(cp)
            if stop.get("idTag", S.valid_id_tag) != S.valid_id_tag:
                raise ConformanceFailure(f"StopTransaction idTag {stop.get('idTag')}, expected {S.valid_id_tag}")
        await _bill_counts_energy(cp, ref, start, asked)


@octt("TC_069_CS")
async def test_tc_069_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    parent = "EVHILPARENT1"
    session.parents.update({S.valid_id_tag: parent, S.valid_id_tag_2: parent})
    session.tokens[S.valid_id_tag_2] = "Accepted"
    await st.charging(cp)
    with step(1, "a different idTag with the same parentIdTag: Authorize"):
        await cp.control.present_token(S.valid_id_tag_2, C)
        await session.expect("Authorize", {"idTag": S.valid_id_tag_2}, timeout=T)
    with step(3, "StopTransaction with the new idTag, StatusNotification Finishing"):
        await session.expect("StopTransaction", {"idTag": S.valid_id_tag_2}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)


async def _unplug_case(cp: ChargerUnderTest, stop_on_disconnect: bool, unlock: bool) -> None:
    session = cp.session
    await st.configure(session, MinimumStatusDuration=0, StopTransactionOnEVSideDisconnect=stop_on_disconnect,
                       UnlockConnectorOnEVSideDisconnect=unlock)
    tx = await st.charging(cp)
    await cp.control.unplug(C)
    if stop_on_disconnect:
        with step(1, "unplug on the EV side: StopTransaction EVDisconnected, StatusNotification Finishing"):
            await session.expect("StopTransaction", {"reason": "EVDisconnected", "transactionId": tx}, timeout=T)
            await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
                "Finishing", "Available") if not unlock else v in ("Finishing", "Available")}, timeout=T)
        if not unlock:
            with step(5, "UnlockConnector: Unlocked or NotSupported"):
                answer = await session.call("UnlockConnector", {"connectorId": C})
                if answer["status"] not in ("Unlocked", "NotSupported"):
                    raise ConformanceFailure(f"UnlockConnector answered {answer['status']}")
        return
    with step(1, "unplug on the EV side: StatusNotification SuspendedEV or SuspendedEVSE, no StopTransaction"):
        await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "SuspendedEV", "SuspendedEVSE")}, timeout=T)
        await session.expect_none("StopTransaction", within=0.5)
    with step(3, "RemoteStopTransaction: StatusNotification Finishing (or Available), StopTransaction Remote"):
        await session.call_expect("RemoteStopTransaction", {"transactionId": tx}, "Accepted")
        await session.expect("StopTransaction", {"reason": "Remote", "transactionId": tx}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "Finishing", "Available")}, timeout=T)


@octt("TC_005_1_CS")
async def test_tc_005_1_cs(booted16: ChargerUnderTest) -> None:
    await _unplug_case(booted16, stop_on_disconnect=True, unlock=True)


@octt("TC_005_2_CS")
async def test_tc_005_2_cs(booted16: ChargerUnderTest) -> None:
    await _unplug_case(booted16, stop_on_disconnect=True, unlock=False)


@octt("TC_005_3_CS")
async def test_tc_005_3_cs(booted16: ChargerUnderTest) -> None:
    await _unplug_case(booted16, stop_on_disconnect=False, unlock=False)


# -- 2.4 cache ---------------------------------------------------------------------------------------------------
@octt("TC_007_CS")
async def test_tc_007_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.id_tag_cached(cp)
    await st.configure(session, AuthorizationCacheEnabled=True, AuthorizeRemoteTxRequests=True, LocalPreAuthorize=True)
    session.consume_all()
    with step(1, "plug in: Preparing"):
        await cp.control.plug_in(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(3, "RemoteStartTransaction with the cached idTag: Accepted"):
        authorizations = len(session.trace.calls("Authorize"))
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
    with step(5, "StartTransaction and Charging, authorised from the cache (no Authorize)"):
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)
        if len(session.trace.calls("Authorize")) > authorizations:
            raise ConformanceFailure("sent Authorize for an idTag in its cache with LocalPreAuthorize true")


@octt("TC_061_CS")
async def test_tc_061_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, AuthorizationCacheEnabled=True, LocalPreAuthorize=True,
                       ConnectionTimeOut=S.connection_timeout)
    await st.authorized(cp)
    with step(3, "present the card again (or wait for ConnectionTimeOut): StatusNotification Available"):
        await cp.control.present_token(S.valid_id_tag, C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"},
                             timeout=S.connection_timeout + T)
    with step(5, "ClearCache: Accepted"):
        await session.call_expect("ClearCache", {}, "Accepted")
    with step(7, "present the same idTag: Authorize is sent (the cache is empty)"):
        session.consume_all()
        await cp.control.present_token(S.valid_id_tag, C)
        await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)


# -- 2.5 remote actions ------------------------------------------------------------------------------------------------
@octt("TC_010_CS")
async def test_tc_010_cs(booted16: ChargerUnderTest) -> None:
    await st.charging(booted16)


@octt("TC_011_1_CS")
async def test_tc_011_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "GetConfiguration AuthorizeRemoteTxRequests"):
        authorize_remote = await st.get_configuration(session, "AuthorizeRemoteTxRequests")
        if authorize_remote is None:
            raise ConformanceFailure("GetConfiguration does not know AuthorizeRemoteTxRequests")
    with step(3, "RemoteStartTransaction before the cable: Accepted"):
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
        if authorize_remote.lower() == "true":
            await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)
    with step(7, "StatusNotification Preparing"):
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(9, "plug in: StartTransaction, StatusNotification Charging"):
        await cp.control.plug_in(C)
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)


@octt("TC_011_2_CS")
async def test_tc_011_2_cs(booted16: ChargerUnderTest) -> None:
    session = booted16.session
    await st.configure(session, ConnectionTimeOut=S.connection_timeout)
    authorize_remote = await st.get_configuration(session, "AuthorizeRemoteTxRequests")
    with step(3, "RemoteStartTransaction: Accepted, Preparing"):
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
        if (authorize_remote or "").lower() == "true":
            await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(9, "no cable within ConnectionTimeOut: StatusNotification Available, no transaction"):
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"},
                             timeout=S.connection_timeout + T)
        await session.expect_none("StartTransaction", within=0.5)


@octt("TC_012_CS")
async def test_tc_012_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    async with _reference_energy(cp) as ref:
        tx, start = await _metered_charging(cp)
        with step("evhil", "ChangeAvailability Inoperative during the transaction: Scheduled, and the transaction "
                           "goes on (OCPP 1.6 §5.2)"):
            await _availability_scheduled(cp, ref)
        with step(1, "RemoteStopTransaction: Accepted"):
            asked = time.time()
            await session.call_expect("RemoteStopTransaction", {"transactionId": tx}, "Accepted")
        with step(3, "StopTransaction reason Remote, StatusNotification Finishing (or Unavailable: OCPP 1.6 §4.9 C8, "
                     "the connector is scheduled to become Unavailable)"):
            await session.expect("StopTransaction", {"transactionId": tx, "reason": "Remote"}, timeout=T)
            status = await session.expect_frame("StatusNotification", {"connectorId": C, "status": lambda v: v in (
                "Finishing", "Unavailable")}, timeout=T)
        await _bill_counts_energy(cp, ref, start, asked)
    with step("evhil", "the scheduled change applies once the transaction has ended: StatusNotification Unavailable, "
                       "at the latest when the cable is out (OCPP 1.6 §5.2; §4.9 C8, F8)"):
        if status.payload["status"] != "Unavailable":
            await cp.control.unplug(C)
            status = await session.expect_frame("StatusNotification", {"connectorId": C, "status": "Unavailable"},
                                                timeout=T)
        if status.time < asked:
            raise ConformanceFailure("StatusNotification Unavailable before the transaction was asked to stop")


# -- 2.6 reset ------------------------------------------------------------------------------------------------------------
async def _reset_without_transaction(cp: ChargerUnderTest, kind: str) -> None:
    session = cp.session
    await st.connector_unavailable(cp)
    with step(5, f"Reset {kind}: Accepted"):
        await session.call_expect("Reset", {"type": kind}, "Accepted")
    with step(7, "BootNotification; the connector stays Unavailable, the others Available"):
        await session.expect("BootNotification", timeout=T)
        await _available_everywhere(cp, expect_unavailable=C)
    with step(11, "ChangeAvailability Operative: Accepted, StatusNotification Available"):
        await session.call_expect("ChangeAvailability", {"connectorId": C, "type": "Operative"}, "Accepted")
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"}, timeout=T)


@octt("TC_013_CS")
async def test_tc_013_cs(booted16: ChargerUnderTest) -> None:
    await _reset_without_transaction(booted16, "Hard")


@octt("TC_014_CS")
async def test_tc_014_cs(booted16: ChargerUnderTest) -> None:
    await _reset_without_transaction(booted16, "Soft")


async def _reset_with_transaction(cp: ChargerUnderTest, kind: str) -> None:
    session = cp.session
    tx = await st.charging(cp)
    with step(1, f"Reset {kind}: Accepted"):
        await session.call_expect("Reset", {"type": kind}, "Accepted")
    with step(3, f"StopTransaction reason {kind}Reset, StatusNotification Finishing"):
        await session.expect("StopTransaction", {"transactionId": tx, "reason": f"{kind}Reset"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)
    with step(7, "BootNotification; the connector Finishing or Preparing"):
        await session.expect("BootNotification", timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "Finishing", "Preparing")}, timeout=T)


@octt("TC_015_CS")
async def test_tc_015_cs(booted16: ChargerUnderTest) -> None:
    await _reset_with_transaction(booted16, "Hard")


@octt("TC_016_CS")
async def test_tc_016_cs(booted16: ChargerUnderTest) -> None:
    await _reset_with_transaction(booted16, "Soft")


# -- 2.7 unlock ---------------------------------------------------------------------------------------------------------------
@octt("TC_017_1_CS")
async def test_tc_017_1_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "UnlockConnector without a session: Unlocked"):
        await booted16.session.call_expect("UnlockConnector", {"connectorId": C}, "Unlocked")


@octt("TC_018_1_CS")
async def test_tc_018_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    tx = await st.charging(cp)
    with step(1, "UnlockConnector during the session: Unlocked"):
        await session.call_expect("UnlockConnector", {"connectorId": C}, "Unlocked")
    with step(3, "StopTransaction reason UnlockCommand, StatusNotification Finishing"):
        await session.expect("StopTransaction", {"transactionId": tx, "reason": "UnlockCommand"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)
    with step(7, "unplug: StatusNotification Available"):
        await cp.control.unplug(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"}, timeout=T)


# -- 2.8 configuration --------------------------------------------------------------------------------------------------------
CORE_KEYS = {
    "AuthorizeRemoteTxRequests": None, "ClockAlignedDataInterval": False, "ConnectionTimeOut": False,
    "GetConfigurationMaxKeys": True, "HeartbeatInterval": False, "LocalAuthorizeOffline": False,
    "LocalPreAuthorize": False, "MeterValuesAlignedData": False, "MeterValuesSampledData": False,
    "MeterValueSampleInterval": False, "NumberOfConnectors": True, "ResetRetries": False,
    "StopTransactionOnInvalidId": False, "StopTxnAlignedData": False, "StopTxnSampledData": False,
    "SupportedFeatureProfiles": True, "TransactionMessageAttempts": False, "TransactionMessageRetryInterval": False,
    "UnlockConnectorOnEVSideDisconnect": None,
}
"""Core keys and whether they are read-only (None: either is allowed). ConnectorPhaseRotation is required
by the document too; this emulator is DC and does not report it, so it is not asserted."""
PROFILE_KEYS = {
    "LocalAuthListManagement": {"LocalAuthListEnabled": False, "LocalAuthListMaxLength": True,
                                "SendLocalListMaxLength": True},
    "SmartCharging": {"ChargeProfileMaxStackLevel": True, "ChargingScheduleAllowedChargingRateUnit": True,
                      "ChargingScheduleMaxPeriods": True, "MaxChargingProfilesInstalled": True},
}


@octt("TC_019_CS")
async def test_tc_019_cs(booted16: ChargerUnderTest) -> None:
    session = booted16.session
    with step(1, "GetConfiguration SupportedFeatureProfiles"):
        answer = await session.call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
        if answer.get("unknownKey"):
            raise ConformanceFailure(f"SupportedFeatureProfiles reported unknown: {answer}")
        profiles = answer["configurationKey"][0].get("value", "").split(",")
    with step(3, "GetConfiguration of every key: the required keys with the right accessibility"):
        answer = await session.call("GetConfiguration", {})
        keys = {e["key"]: e for e in answer["configurationKey"]}
        required = dict(CORE_KEYS)
        for profile in profiles:
            required.update(PROFILE_KEYS.get(profile.strip(), {}))
        missing = [k for k in required if k not in keys]
        if missing:
            raise ConformanceFailure(f"required keys missing: {', '.join(missing)}")
        wrong = [k for k, ro in required.items() if ro is not None and keys[k]["readonly"] != ro]
        if wrong:
            raise ConformanceFailure(f"wrong accessibility (readonly) for: {', '.join(wrong)}")
    with step(5, "GetConfiguration GetConfigurationMaxKeys"):
        max_keys = int(await st.get_configuration(session, "GetConfigurationMaxKeys") or 0)
    with step(7, "GetConfiguration of as many keys as allowed: all known"):
        wanted = list(keys)[: max(1, min(max_keys, len(keys)))]
        answer = await session.call("GetConfiguration", {"key": wanted})
        got = {e["key"] for e in answer["configurationKey"]}
        if answer.get("unknownKey") or set(wanted) - got:
            raise ConformanceFailure(f"asked {len(wanted)} keys, missing {sorted(set(wanted) - got)}, "
                                     f"unknown {answer.get('unknownKey')}")


@octt("TC_021_CS")
async def test_tc_021_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    interval = S.meter_value_sample_interval
    value = str(interval)
    await st.configure(session, MeterValueSampleInterval=interval + 7)  # before: NOT the configured interval
    with step(1, f"ChangeConfiguration MeterValueSampleInterval={value}: Accepted"):
        await session.call_expect("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": value}, "Accepted")
    with step(3, "GetConfiguration MeterValueSampleInterval shows the new value"):
        got = await st.get_configuration(session, "MeterValueSampleInterval")
        if got != value:
            raise ConformanceFailure(f"MeterValueSampleInterval reads {got!r}, expected {value!r}")
    beat = S.heartbeat_interval
    with step("evhil", f"ChangeConfiguration HeartbeatInterval={beat}: Accepted, and the Heartbeats on the wire follow "
                       "it (OCPP 1.6 §5.3: Accepted means in effect; §4.6, §9.1.10)"):
        session.consume_all()
        await session.call_expect("ChangeConfiguration", {"key": "HeartbeatInterval", "value": str(beat)}, "Accepted")
        since = time.time()
        beats = await _arriving(session, "Heartbeat", None, 2, beat, "HeartbeatInterval")
        _heartbeats_follow(session, since, beats, beat)
    with step("evhil", f"MeterValueSampleInterval is applied: a transaction's MeterValues arrive every {value} s from "
                       "its start (OCPP 1.6 §5.3, §3.16.1, §9.1.19)"):
        tx = await st.charging(cp)
        start = session.trace.calls("StartTransaction")[-1]
        frames = await _arriving(session, "MeterValues", _sampled(tx, "Sample.Periodic"), 2, interval,
                                 "MeterValueSampleInterval")
        _spacing([start, *frames], interval, "StartTransaction and the periodic MeterValues frames")


# -- 2.9 meter values ------------------------------------------------------------------------------------------------------
async def _meter_values_case(cp: ChargerUnderTest, aligned: bool) -> None:
    session = cp.session
    interval = S.clock_aligned_data_interval if aligned else S.meter_value_sample_interval
    await st.configure(session, MeterValueSampleInterval=0 if aligned else interval,
                       ClockAlignedDataInterval=interval if aligned else 0)
    key = "MeterValuesAlignedData" if aligned else "MeterValuesSampledData"
    measurands = [m for m in (await st.get_configuration(session, key) or "").split(",") if m] or [
        "Energy.Active.Import.Register"]
    context = "Sample.Clock" if aligned else "Sample.Periodic"
    async with _reference_energy(cp) as ref:
        tx, start = await _metered_charging(cp)
        with step(1, f"MeterValues every {interval} s, context {context}, a value of each measurand of {key}"):
            session.consume_all()
            frames = await _arriving(session, "MeterValues", _sampled(tx, context), 3, interval,
                                     "ClockAlignedDataInterval" if aligned else "MeterValueSampleInterval")
            stamps = [_at(f.payload["meterValue"][0]) for f in frames]
            for a, b in zip(stamps, stamps[1:]):
                if abs(b - a - interval) > S.max_time_deviation:
                    raise ConformanceFailure(f"meter value timestamps {b - a:.2f} s apart, expected {interval} s")
            for f, stamp in zip(frames, stamps):
                values = f.payload["meterValue"][0]["sampledValue"]
                got = {v.get("measurand", "Energy.Active.Import.Register") for v in values}
                if not set(measurands) <= got:  # a measurand may come per phase or location (OCPP 1.6 §3.16.3)
                    raise ConformanceFailure(f"sampled measurands {sorted(got)}, expected {measurands}")
                if any(v.get("context", "Sample.Periodic") != context for v in values):
                    raise ConformanceFailure(f"sampled value context {[v.get('context') for v in values]}, expected "
                                             f"{context}")
                if aligned and abs(stamp - round(stamp / interval) * interval) > 0.5:
                    raise ConformanceFailure(f"clock-aligned timestamp {f.payload['meterValue'][0]['timestamp']} is "
                                             f"not on a multiple of {interval} s")
        with step("evhil", f"the MeterValues frames arrive every {interval} s on the wire, as configured (OCPP 1.6 "
                           f"{'§3.16.2, §9.1.5' if aligned else '§3.16.1, §9.1.19'})"):
            _spacing(frames, interval, "MeterValues frames")
        await _samples_count_energy(ref, start, frames)


@octt("TC_070_CS")
async def test_tc_070_cs(booted16: ChargerUnderTest) -> None:
    await _meter_values_case(booted16, aligned=False)


@octt("TC_071_CS")
async def test_tc_071_cs(booted16: ChargerUnderTest) -> None:
    await _meter_values_case(booted16, aligned=True)


# -- 2.10-2.12 non-happy flows -----------------------------------------------------------------------------------------------
@octt("TC_023_CS")
async def test_tc_023_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, LocalPreAuthorize=True)
    with step(1, "plug in: Preparing"):
        await cp.control.plug_in(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(3, "present an invalid idTag: Authorize answered Invalid, no transaction"):
        await cp.control.present_token(INVALID_TOKEN, C)
        await session.expect("Authorize", {"idTag": INVALID_TOKEN}, timeout=T)
        await session.expect_none("StartTransaction", within=S.transaction_duration)


@octt("TC_024_CS")
async def test_tc_024_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    authorize_remote = await st.get_configuration(session, "AuthorizeRemoteTxRequests")
    with step(3, "RemoteStartTransaction: Accepted, Preparing"):
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
        if (authorize_remote or "").lower() == "true":
            await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(9, "cable in halfway (the lock fails): Faulted with ConnectorLockFailure, no transaction"):
        await cp.control.raise_fault(C, "ConnectorLockFailure")
        await session.expect("StatusNotification", {"connectorId": C, "status": "Faulted",
                                                     "errorCode": "ConnectorLockFailure"}, timeout=T)
        await session.expect_none("StartTransaction", within=1.0)


@octt("TC_026_CS")
async def test_tc_026_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, LocalPreAuthorize=False)
    await st.charging(cp)
    with step(1, "RemoteStartTransaction on the busy connector: Rejected"):
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Rejected")


@octt("TC_027_CS")
async def test_tc_027_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "RemoteStartTransaction with connectorId 0: Rejected (or a CALLERROR)"):
        try:
            answer = await booted16.session.call("RemoteStartTransaction", {"connectorId": 0, "idTag": S.valid_id_tag})
        except CallError:
            return
        if answer["status"] != "Rejected":
            raise ConformanceFailure(f"RemoteStartTransaction answered {answer['status']}, expected Rejected")


@octt("TC_028_CS")
async def test_tc_028_cs(booted16: ChargerUnderTest) -> None:
    tx = await st.charging(booted16)
    with step(1, "RemoteStopTransaction with an unknown transactionId: Rejected"):
        await booted16.session.call_expect("RemoteStopTransaction", {"transactionId": tx + 1000}, "Rejected")


@octt("TC_030_CS")
async def test_tc_030_cs(booted16: ChargerUnderTest) -> None:
    cp = booted16
    with step("before", "the connector lock is broken"):
        await cp.control.raise_fault(C, "ConnectorLockFailure")
    with step(1, "UnlockConnector: UnlockFailed"):
        await cp.session.call_expect("UnlockConnector", {"connectorId": C}, "UnlockFailed")


@octt("TC_031_CS")
async def test_tc_031_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "UnlockConnector of an unknown connector: NotSupported"):
        await booted16.session.call_expect("UnlockConnector", {"connectorId": booted16.connectors + 1}, "NotSupported")


# -- 2.15-2.16 configuration keys, fault behaviour ---------------------------------------------------------------------------
@octt("TC_040_1_CS")
async def test_tc_040_1_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "ChangeConfiguration of an unknown key: NotSupported"):
        await booted16.session.call_expect("ChangeConfiguration", {"key": "Testing", "value": "true"}, "NotSupported")


@octt("TC_040_2_CS")
async def test_tc_040_2_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "ChangeConfiguration MeterValueSampleInterval=-1: Rejected (or PropertyConstraintViolation)"):
        try:
            answer = await booted16.session.call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "-1"})
        except CallError as exc:
            if exc.code != "PropertyConstraintViolation":
                raise ConformanceFailure(f"CALLERROR {exc.code}, expected PropertyConstraintViolation") from None
            return
        if answer["status"] != "Rejected":
            raise ConformanceFailure(f"ChangeConfiguration answered {answer['status']}, expected Rejected")


@octt("TC_041_CS")
async def test_tc_041_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "a fault: StatusNotification Faulted"):
        await cp.control.raise_fault(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Faulted"}, timeout=T)
    with step(3, "the EV driver tries to start: no transaction"):
        await cp.control.plug_in(C)
        await cp.control.present_token(S.valid_id_tag, C)
        await session.expect_none("StartTransaction", within=S.transaction_duration)


@octt("TC_062_CS")
async def test_tc_062_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "DataTransfer with an unknown vendorId: Rejected, UnknownMessageId or UnknownVendorId"):
        answer = await booted16.session.call("DataTransfer", {"vendorId": "org.evhil.unknown", "messageId": "Probe"})
        if answer["status"] not in ("Rejected", "UnknownMessageId", "UnknownVendorId"):
            raise ConformanceFailure(f"DataTransfer answered {answer['status']}")


# -- 2.13 power failure ---------------------------------------------------------------------------------------
async def _power_cycle(cp: ChargerUnderTest) -> None:
    await cp.control.power_off()
    await cp.control.power_on()


@octt("TC_032_1_CS")
async def test_tc_032_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    tx = await st.charging(cp)
    with step(1, "supply off: StopTransaction reason PowerLoss, StatusNotification Finishing, before going down"):
        await cp.control.power_off()
        await session.expect("StopTransaction", {"transactionId": tx, "reason": "PowerLoss"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)
    with step(5, "supply on: BootNotification; the connector Finishing or Preparing, connector 0 Available"):
        session.consume_all()
        await cp.control.power_on()
        await session.expect("BootNotification", timeout=T)
        await session.expect("StatusNotification", {"connectorId": 0, "status": "Available"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "Finishing", "Preparing")}, timeout=T)


@octt("TC_032_2_CS")
async def test_tc_032_2_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    tx = await st.charging(cp)
    with step(1, "supply off and on: BootNotification accepted"):
        await _power_cycle(cp)
        await session.expect("BootNotification", timeout=T)
    with step(3, "StatusNotification for the connector: Preparing, Finishing or Charging"):
        status = await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "Preparing", "Finishing", "Charging", "Available", "Unavailable")}, timeout=T)
    with step(5, "the transaction ends: resumed and stopped locally (Local), or stopped for the power loss"):
        if status["status"] == "Charging":
            await cp.control.present_token(S.valid_id_tag, C)
        stop = await session.expect("StopTransaction", {"transactionId": tx}, timeout=T)
        if stop.get("reason", "Local") not in ("Local", "PowerLoss"):
            raise ConformanceFailure(f"StopTransaction reason {stop.get('reason')}, expected Local or PowerLoss")


@octt("TC_034_CS")
async def test_tc_034_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "ChangeAvailability connectorId 0 Inoperative: Accepted, every connector Unavailable"):
        await session.call_expect("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}, "Accepted")
        await session.expect("StatusNotification", {"connectorId": C, "status": "Unavailable"}, timeout=T)
    with step(5, "supply off and on: BootNotification; the connectors still Unavailable"):
        session.consume_all()
        await _power_cycle(cp)
        await session.expect("BootNotification", timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Unavailable"}, timeout=T)
