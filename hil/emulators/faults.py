"""Fault injection shared by every emulator.

An emulator owns one ``Faults`` object and consults it on every request. Tests (or the fault-recovery
suites) flip its fields while the emulator runs; no restart is needed. Times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Faults:
    """What is wrong with an emulated instrument right now."""

    latency: float = 0.0
    """Extra delay before every reply [s], on top of the emulator's own latency setting."""
    no_reply: bool = False
    """Swallow requests: the client times out."""
    loss: float = 0.0
    """Fraction of requests swallowed at random (a lossy bus: 0.1 = one in ten times out)."""
    swallowed: int = 0
    """Count, kept by the emulator: requests swallowed so far (by ``no_reply`` or ``loss``)."""
    late_reply: float = 0.0
    """Delay replies by this many seconds (longer than the client's timeout = a late, stale reply)."""
    garbage_reply: bool = False
    """Answer with bytes that do not parse."""
    drop_connection: bool = False
    """Close the connection on the next request (and refuse to serve until cleared)."""
    frozen: bool = False
    """Measurements stop updating: the last values are served again and again."""
    gain: float = 1.0
    """Multiplier on measured values (0.8 = reads 20 % low)."""
    silent_ids: set[int] | None = None
    """CAN: frame IDs not transmitted (``None`` = none silenced; use ``ALL_IDS`` for total silence)."""

    def clear(self) -> None:
        """Back to a healthy instrument."""
        fresh = Faults()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def silenced(self, can_id: int) -> bool:
        return self.silent_ids is not None and (self.silent_ids is ALL_IDS or can_id in self.silent_ids)


class _AllIds(set):  # type: ignore[type-arg]
    def __contains__(self, item: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ALL_IDS"


ALL_IDS: set[int] = _AllIds()
"""Use as ``faults.silent_ids = ALL_IDS`` for total CAN silence."""

__all__ = ["ALL_IDS", "Faults"]
