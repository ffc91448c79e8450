"""Instrument transcripts as report attachments: what went over SCPI, Modbus and CAN during one test.

Each driver keeps its recent traffic (``PowerSource.transcript``, ``EnergyMeter.transcript``,
``EVSimulator.trace``); these functions turn the part since a test started into text a lab engineer
reads (CAN in candump's log format, so ``canplayer`` and ``cantools`` take it).

Times: seconds since the epoch.
"""

from __future__ import annotations

from datetime import datetime, timezone

import allure

from hil.instruments.energy_meter import EnergyMeter
from hil.instruments.ev_simulator import EVSimulator
from hil.instruments.power_source import PowerSource


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def scpi(source: PowerSource, since: float) -> str:
    """``HH:MM:SS.mmm > COMMAND`` / ``< reply`` lines."""
    return "".join(f"{_clock(t)} {way} {text}\n" for t, way, text in list(source.transcript) if t >= since)


def modbus(meter: EnergyMeter, since: float) -> str:
    """``HH:MM:SS.mmm read input 0..1 (2): 4361 0000`` lines (registers in hex, or the error)."""
    return "".join(f"{_clock(t)} read {table} {address}..{address + count - 1} ({count}): {result}\n"
                   for t, table, address, count, result in list(meter.transcript) if t >= since)


def candump(ev: EVSimulator, since: float) -> str:
    """candump -l lines: ``(1733000000.123456) can0 108#0102030405060708``."""
    return "".join(f"({m.timestamp:.6f}) {ev.channel} {m.arbitration_id:03X}#{bytes(m.data).hex().upper()}\n"
                   for m in list(ev.trace) if m.timestamp >= since)


def attach(name: str, text: str, extension: str = "txt") -> None:
    """Attach ``text`` to the running test's report when there is any."""
    if text:
        allure.attach(text, name=name, attachment_type=allure.attachment_type.TEXT, extension=extension)
