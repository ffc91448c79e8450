"""Vendor profiles of SCPI power sources, loaded from ``profiles/scpi/<name>.yaml``.

A profile is data: the commands the driver sends, the command tree the emulator accepts, reply formats,
status bit maps and quirks (remote lock, out-of-range handling, idle timeout, message gap). The driver and
the emulator load the same file, so a command the driver sends is one the emulator knows.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles" / "scpi"

PROTECTION_CAUSES = ("OV", "OC", "OP", "OT", "INH", "PF", "WDOG")
"""Status bits that mean a latched protection (the rest of a bit map is informational)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rating(_Strict):
    """What the emulated stage can deliver: V, A, W."""

    voltage: float
    current: float
    power: float


class ReplyFormat(_Strict):
    number: str
    """Format of numeric replies; fields ``value`` and ``unit`` (for example ``{value:.2f}{unit}``)."""
    on: str
    off: str
    error: str
    """Format of one error queue entry; fields ``code`` and ``message``."""


class Commands(_Strict):
    """Command templates the driver sends; ``{value}`` is the number. ``None``: the vendor has none."""

    set_voltage: str
    voltage_setpoint: str
    set_current: str
    current_setpoint: str
    set_power: str | None = None
    power_setpoint: str | None = None
    set_ovp: str
    ovp: str
    set_ocp: str | None = None
    enable_ocp: str | None = None
    disable_ocp: str | None = None
    set_opp: str | None = None
    output_on: str
    output_off: str
    output_state: str
    measure: str
    measure_voltage: str
    clear_protection: str | None = None
    watchdog: str | None = None
    lock: str | None = None
    unlock: str | None = None
    identify: str = "*IDN?"
    clear_status: str = "*CLS"
    event_status: str = "*ESR?"
    next_error: str = "SYST:ERR?"
    questionable: str = "STAT:QUES:COND?"


class ScpiProfile(_Strict):
    """One vendor's SCPI dialect."""

    name: str = ""
    maker: str
    models: list[str]
    idn: str
    """The emulator's ``*IDN?`` reply; ``{serial}`` is filled per instance."""
    rated: Rating
    latency_s: float
    """Typical reply latency of the real instrument [s]; the emulator's default."""
    message_gap_s: float
    """Minimum time between two messages the driver sends [s]."""
    idle_timeout_s: float | None
    """The instrument closes an idle connection after this long [s] (``None``: never)."""
    requires_lock: bool
    """Set commands are refused (-221) until remote control is taken with ``commands.lock``."""
    ocp_mode: Literal["limit", "level"]
    """``limit``: OCP trips when the unit enters constant current; ``level``: OCP has its own trip level."""
    out_of_range: Literal["error", "ignore"]
    """``error``: -222 and the value is kept; ``ignore``: silently kept (only a read-back tells)."""
    error_query_clears_alarms: bool
    """Reading the error queue also acknowledges latched protections (EA)."""
    error_queue_length: int
    reply: ReplyFormat
    questionable_bits: dict[str, int]
    operation_bits: dict[str, int]
    tree: dict[str, str]
    """SCPI header pattern (``[SOURce:]VOLTage[:LEVel]``) -> emulator action."""
    commands: Commands

    def protection_causes(self, questionable: int) -> set[str]:
        """The latched protections a ``STAT:QUES:COND?`` value reports."""
        return {name for name, bit in self.questionable_bits.items() if name in PROTECTION_CAUSES and questionable >> bit & 1}


class ProfileError(ValueError):
    """A profile file is missing or malformed."""


def profile_names() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@lru_cache(maxsize=None)
def load_profile(name: str) -> ScpiProfile:
    """Load profile ``name`` (a file stem in ``profiles/scpi``)."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown SCPI profile {name!r}; known: {', '.join(profile_names())}")
    try:
        data = yaml.safe_load(path.read_text())
        return ScpiProfile.model_validate({**data, "name": name})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ProfileError(f"{path}: {exc}") from exc
