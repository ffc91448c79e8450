"""Typed errors raised by instrument drivers. Every message names the instrument and its address."""

from __future__ import annotations


class InstrumentError(Exception):
    """Base class: something went wrong talking to an instrument."""

    def __init__(self, instrument: str, address: str, message: str) -> None:
        self.instrument = instrument
        self.address = address
        self.message = message
        super().__init__(f"{instrument} ({address}): {message}")


class InstrumentUnreachable(InstrumentError):
    """The instrument could not be opened or stopped answering (timeout, refused, dropped)."""


class InstrumentProtocolError(InstrumentError):
    """The instrument answered with something that does not parse."""


class InstrumentReportedError(InstrumentError):
    """The instrument's own error queue or exception response reported an error.

    ``code`` is the SCPI error number or the Modbus exception code.
    """

    def __init__(self, instrument: str, address: str, code: int, message: str) -> None:
        self.code = code
        super().__init__(instrument, address, f"error {code}: {message}")


class SoftLimitError(InstrumentError):
    """A request beyond the rig file's soft limits was refused before it reached the wire."""


class ProtectionTripped(InstrumentError):
    """A latched protection (OV, OC, OP, ...) holds the output off."""

    def __init__(self, instrument: str, address: str, causes: list[str]) -> None:
        self.causes = causes
        super().__init__(instrument, address, f"protection tripped: {', '.join(causes)}")


class UnsafeStateError(InstrumentError):
    """``safe_state()`` could not verify the output is off."""
