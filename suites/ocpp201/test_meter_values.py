"""OCPP 2.0.1 block J, meter values, charging station under test: clock-aligned and sampled meter values
(OCTT 2.0.1 Part 6 §J).

The OCTT judges the intervals by the timestamps the station puts on its samples ("the messages do NOT need
to be sent at the exact interval"); so does this suite, and it also requires the samples to arrive within the
case (a station that stores a new interval but keeps sampling at the old one fails for want of samples).

TC_J_10's evhil step checks the energy the station bills: the Energy.Active.Import.Register readings of the
transaction (Transaction.Begin to Transaction.End, in the unit and multiplier their unitOfMeasure declares;
Wh when it is omitted) against the energy the EVSE's reference meter on the rig counted over the same session.
Allowed: 2 % of the reference (two class 1 / class B meters, EN 50470-3), plus 2 Wh (a 1 Wh register
resolution on each side), plus what flows in <max time deviation> at the power the meter measured (the
station's register may lag its end event by that long). Energy flows for ``ENERGY_S`` s, so a station that
bills 0 Wh, or kWh numbers labelled Wh, is far outside. Without a meter on the EVSE's port the step is skipped.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from hil.ocpp import states201 as st
from hil.ocpp.conformance import ConformanceFailure, octt, show, step
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.smart_charging import parse_datetime

S = st.SETTINGS
T = S.message_timeout
ENERGY = "Energy.Active.Import.Register"
ENERGY_S = 5.0
"""How long energy flows in TC_J_10 before the EV leaves [s] (longer than <Configured transaction duration>)."""
ALIGNED_INTERVAL = 2
"""<Configured clock-aligned Meter Values interval> [s]."""
TX_ENDED_INTERVAL = 1
"""<Configured sampled_tx_ended_meter_values_interval> [s]."""
SAMPLES = 3
"""Samples collected to judge an interval (two gaps), as the OCTT ends TC_J_01 after three messages."""
_WH_PER = {"Wh": 1.0, "kWh": 1000.0}


def _members(value: str | None) -> list[str]:
    return [m.strip() for m in (value or "").split(",") if m.strip()]


def _measurand(sv: dict[str, Any]) -> str:
    return str(sv.get("measurand", ENERGY))


def _has_measurands(mv: dict[str, Any], measurands: list[str], where: str) -> None:
    """The meter value holds an element per configured measurand (an omitted measurand is the energy register)."""
    present = {_measurand(sv) for sv in mv.get("sampledValue", [])}
    missing = [m for m in measurands if m not in present]
    if missing:
        raise ConformanceFailure(f"{where}: no sampledValue for the configured measurand(s) {missing}: {show(mv)}")


def _stamp(mv: dict[str, Any]) -> datetime:
    return parse_datetime(mv["timestamp"])  # type: ignore[return-value]


def _spacing(stamps: list[datetime], interval: float, what: str) -> None:
    """Successive distinct sample timestamps are ``interval`` s apart (± <max time deviation>)."""
    distinct = sorted(set(stamps))
    for a, b in zip(distinct, distinct[1:]):
        gap = (b - a).total_seconds()
        if abs(gap - interval) > S.max_time_deviation:
            raise ConformanceFailure(f"{what}: samples stamped {gap:.2f} s apart; the interval was set to "
                                     f"{interval:g} s (± {S.max_time_deviation:g} s)")


async def _distinct_samples(cs: ChargerUnderTest, action: str, match: dict[str, Any], count: int, interval: float,
                            what: str) -> list[dict[str, Any]]:
    """CALLs of ``action`` matching ``match`` until their meter values carry ``count`` distinct timestamps,
    within count x interval + message timeout; returns the meter values."""
    values: list[dict[str, Any]] = []
    deadline = time.monotonic() + count * interval + T
    while len({mv["timestamp"] for mv in values}) < count:
        remaining = deadline - time.monotonic()
        try:
            payload = await cs.session.expect(action, match, timeout=max(remaining, 0.01))
        except ConformanceFailure:
            seen = len({mv["timestamp"] for mv in values})
            raise ConformanceFailure(f"{what}: {seen} sample(s) within {count * interval + T:g} s; with the interval "
                                     f"set to {interval:g} s, {count} were due") from None
        values += payload.get("meterValue", [])
    return values


def _energy_wh(sv: dict[str, Any]) -> float:
    """An Energy.Active.Import.Register sampledValue in Wh, by its unitOfMeasure (unit Wh or kWh, default Wh;
    value x 10^multiplier, default 0)."""
    unit = sv.get("unitOfMeasure") or {}
    name, multiplier = unit.get("unit", "Wh"), int(unit.get("multiplier", 0))
    if name not in _WH_PER:
        raise ConformanceFailure(f"{ENERGY} in unit {name!r}, not an energy unit (Wh, kWh): {show(sv)}")
    return float(sv["value"]) * 10.0 ** multiplier * _WH_PER[name]


def _register(events: list[dict[str, Any]], context: str) -> float | None:
    """The energy register [Wh] of the first sampledValue with ``context`` (outlet, no phase) in ``events``."""
    for event in events:
        for mv in event.get("meterValue", []):
            for sv in mv.get("sampledValue", []):
                if (_measurand(sv) == ENERGY and sv.get("context") == context and "phase" not in sv
                        and sv.get("location", "Outlet") == "Outlet"):
                    return _energy_wh(sv)
    return None


def _transaction_events(cs: ChargerUnderTest, tx: str) -> list[dict[str, Any]]:
    return [f.payload for f in cs.session.trace.calls("TransactionEvent")
            if f.payload["transactionInfo"]["transactionId"] == tx]


# -- J01 clock-aligned meter values ----------------------------------------------------------------------
@octt("TC_J_01_CS")
async def test_tc_j_01_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, AlignedDataCtrlr__Interval=ALIGNED_INTERVAL)
    measurands = _members(await st.get_variable(session, "AlignedDataCtrlr.Measurands")) or [ENERGY]
    session.consume_all()
    what = f"MeterValues every {ALIGNED_INTERVAL} s (AlignedDataCtrlr.Interval)"
    with step(1, f"MeterValues, context Sample.Clock, an element per AlignedDataMeasurands; {SAMPLES} samples"):
        values = await _distinct_samples(booted201, "MeterValues", {}, SAMPLES, ALIGNED_INTERVAL, what)
        _sampled_as(values, "Sample.Clock", measurands, "MeterValues")
    with step("post", f"the samples' timestamps are AlignedDataCtrlr.Interval ({ALIGNED_INTERVAL} s) apart"):
        _spacing([_stamp(mv) for mv in values], ALIGNED_INTERVAL, what)


# -- J02 sampled meter values --------------------------------------------------------------------------------
@octt("TC_J_09_CS")
async def test_tc_j_09_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    interval = S.tx_updated_interval
    await st.set_variables(session, SampledDataCtrlr__TxUpdatedInterval=interval)
    measurands = _members(await st.get_variable(session, "SampledDataCtrlr.TxUpdatedMeasurands")) or [ENERGY]
    tx = await st.charging(booted201, S)
    what = f"TransactionEvent MeterValuePeriodic every {interval} s (SampledDataCtrlr.TxUpdatedInterval)"
    with step(1, f"TransactionEvent Updated, MeterValuePeriodic, Sample.Periodic, the TxUpdatedMeasurands; "
                 f"{SAMPLES} samples"):
        values = await _distinct_samples(booted201, "TransactionEvent", st.event_match(
            event_type="Updated", trigger="MeterValuePeriodic", tx=tx), SAMPLES, interval, what)
        _sampled_as(values, "Sample.Periodic", measurands, "TransactionEvent")
    with step("post", f"the samples' timestamps are SampledDataTxUpdatedInterval ({interval} s) apart"):
        _spacing([_stamp(mv) for mv in values], interval, what)


def _sampled_as(values: list[dict[str, Any]], context: str, measurands: list[str], message: str) -> None:
    """Each meter value's first sampledValue has ``context``, and the values hold every one of ``measurands``."""
    for mv in values:
        if mv["sampledValue"][0].get("context") != context:
            raise ConformanceFailure(f"sampledValue[0].context {mv['sampledValue'][0].get('context')!r}, "
                                     f"expected {context}: {show(mv)}")
        _has_measurands(mv, measurands, message)


async def _settled_register_wh(cs: ChargerUnderTest) -> float | None:
    """The reference meter's import register [Wh] once its current has dropped under 0.5 A (within 3 s)."""
    meter = cs.meter(S.evse)
    if meter is None:
        return None
    deadline = time.monotonic() + 3.0
    values = await meter.aread()
    while max(abs(i) for i in values.current) > 0.5 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        values = await meter.aread()
    return values.import_kwh * 1000.0


@octt("TC_J_10_CS")
async def test_tc_j_10_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.set_variables(session, SampledDataCtrlr__TxEndedInterval=TX_ENDED_INTERVAL,
                           AlignedDataCtrlr__TxEndedMeasurands="")
    measurands = _members(await st.get_variable(session, "SampledDataCtrlr.TxEndedMeasurands")) or [ENERGY]
    meter = st.reference_meter(booted201, S)
    before_wh = await _settled_register_wh(booted201)
    tx = await st.charging(booted201, S)
    await asyncio.sleep(ENERGY_S / 2)
    power_w = (await meter.aread()).total_power if meter is not None else 0.0
    await asyncio.sleep(ENERGY_S / 2)
    with step(1, "ParkingBayUnoccupied: the EV is unplugged and leaves; TransactionEvent Ended"):
        ended = await st.ev_disconnected(booted201, S)
        if ended is None:
            raise ConformanceFailure("no TransactionEvent Ended after the EV left")
    with step("post", "the Ended event has meter values: Sample.Periodic every TxEndedInterval, one Transaction.End, "
                      "an element per TxEndedMeasurands"):
        values = ended.get("meterValue") or []
        contexts = [sv.get("context") for mv in values for sv in mv.get("sampledValue", [])[:1]]
        if "Transaction.End" not in contexts:
            raise ConformanceFailure(f"no meter value with context Transaction.End in the Ended event: {show(values)}")
        periodic = [mv for mv in values if mv["sampledValue"][0].get("context") == "Sample.Periodic"]
        if not periodic:
            raise ConformanceFailure(f"no Sample.Periodic meter value in the Ended event although the transaction "
                                     f"ran over {ENERGY_S:g} s with TxEndedInterval {TX_ENDED_INTERVAL} s: "
                                     f"{show(values)}")
        for mv in values:
            _has_measurands(mv, measurands, "Ended event")
        _spacing([_stamp(mv) for mv in periodic], TX_ENDED_INTERVAL,
                 f"Ended event samples every {TX_ENDED_INTERVAL} s (SampledDataCtrlr.TxEndedInterval)")
    with step("evhil", "the energy billed (Energy.Active.Import.Register, Transaction.Begin to Transaction.End, in "
                       "its declared unit) is what the EVSE's reference meter counted"):
        after_wh = await _settled_register_wh(booted201)
        if before_wh is None or after_wh is None:
            return
        events = _transaction_events(booted201, tx)
        begin, end = _register(events, "Transaction.Begin"), _register([ended], "Transaction.End")
        if begin is None or end is None:
            raise ConformanceFailure(f"no {ENERGY} reading with context "
                                     f"{'Transaction.Begin' if begin is None else 'Transaction.End'} in the "
                                     "transaction's events; the energy billed cannot be told")
        billed, measured = end - begin, after_wh - before_wh
        allowed = 0.02 * measured + 2.0 + max(power_w, 0.0) * S.max_time_deviation / 3600.0
        if abs(billed - measured) > allowed:
            raise ConformanceFailure(f"the transaction billed {billed:.4g} Wh (register {begin:.6g} to {end:.6g} Wh "
                                     f"as declared), the EVSE's meter counted {measured:.1f} Wh; "
                                     f"allowed ± {allowed:.1f} Wh")
