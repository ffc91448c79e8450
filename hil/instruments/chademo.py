"""CHAdeMO frames as evhil uses them, from the project's DBC (``profiles/can/chademo.dbc``).

The EV sends 0x100 (limits), 0x101 (times, capacity) and 0x102 (request, faults, status, SoC) every
100 ms; the charger answers with 0x108 (capability) and 0x109 (present output, status). 0x6F0 and 0x6F1
are evhil's control and status messages for an EV simulator. Multi-byte fields are little-endian.
"""

from __future__ import annotations

from enum import IntEnum
from functools import lru_cache
from pathlib import Path

import cantools
from cantools.database.can import Database

DBC_DIR = Path(__file__).resolve().parent / "profiles" / "can"

EV_LIMITS = 0x100
EV_TIMES = 0x101
EV_REQUEST = 0x102
CHARGER_CAPABILITY = 0x108
CHARGER_STATUS = 0x109
SIM_CONTROL = 0x6F0
SIM_STATUS = 0x6F1
EV_FRAMES = (EV_LIMITS, EV_TIMES, EV_REQUEST)
CHARGER_FRAMES = (CHARGER_CAPABILITY, CHARGER_STATUS)
PERIOD_S = 0.1
"""Cycle time of every CHAdeMO frame [s]."""
SILENCE_TIMEOUT_S = 1.0
"""A peer silent this long has gone away: the other side stops."""

FAULT_SIGNALS = {
    "overvoltage": "FaultOverVoltage",
    "undervoltage": "FaultUnderVoltage",
    "current_deviation": "FaultCurrentDeviation",
    "high_temperature": "FaultHighTemperature",
    "voltage_deviation": "FaultVoltageDeviation",
}
"""Fault flag name -> 0x102 signal; the bit order of ``EVSIM_Control.Faults`` is this order."""

SILENCE_BITS = {EV_LIMITS: 0x01, EV_TIMES: 0x02, EV_REQUEST: 0x04}
"""``EVSIM_Control.SilenceMask`` bits."""


class SimCommand(IntEnum):
    SET = 0
    PLUG_IN = 1
    UNPLUG = 2
    START = 3
    STOP = 4
    PING = 5


class SimState(IntEnum):
    UNPLUGGED = 0
    PLUGGED = 1
    WAITING = 2
    CHARGING = 3
    STOPPING = 4
    STOPPED = 5
    FAULT = 6


@lru_cache(maxsize=None)
def load_dbc(name: str = "chademo") -> Database:
    """The DBC ``name`` from ``profiles/can`` (or a path to a ``.dbc`` file)."""
    path = Path(name) if name.endswith(".dbc") else DBC_DIR / f"{name}.dbc"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in DBC_DIR.glob("*.dbc")))
        raise FileNotFoundError(f"no DBC {name!r}; shipped: {known}")
    return cantools.database.load_file(str(path))  # type: ignore[return-value]
