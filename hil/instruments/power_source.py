"""Driver for programmable DC power sources over VISA/SCPI (pyvisa + pyvisa-py).

One class for every vendor: the differences (command spellings, reply formats, remote lock, status bit
maps, OCP semantics, message gap, idle timeout) come from the vendor profile (``scpi_profile``). Every
set point is checked against the rig's soft limits before anything is sent, written together with a
read-back and an error check in one message, and compared with what the instrument kept.

Units: V, A, W, seconds. Thread-safe: one lock per instrument (pyvisa sessions are not).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from hil.instruments.errors import (
    InstrumentProtocolError, InstrumentReportedError, InstrumentUnreachable, ProtectionTripped, SoftLimitError,
    UnsafeStateError,
)
from hil.instruments.limits import SoftLimits
from hil.instruments.scpi_profile import ScpiProfile, load_profile

log = logging.getLogger(__name__)

TOUCH_SAFE_VOLTAGE = 60.0
"""Below this output voltage [V DC] a source counts as safe to touch."""
RAMP_STEP_S = 0.01
"""Software ramps move the set point every 10 ms."""

_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*[A-Za-z]*\s*$")


class Transport(Protocol):
    """What the driver needs from a VISA session (a pyvisa resource satisfies it)."""

    def write(self, message: str) -> Any: ...
    def read(self) -> str: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Identity:
    """The ``*IDN?`` answer, split."""

    maker: str
    model: str
    serial: str
    firmware: str
    raw: str

    @property
    def summary(self) -> str:
        return f"{self.maker} {self.model} serial {self.serial} firmware {self.firmware}"


@dataclass(frozen=True)
class Measurement:
    """Output measured by the instrument: V, A, W (negative current or power: sinking)."""

    voltage: float
    current: float
    power: float


class PowerSource:
    """A SCPI power source named in a rig file.

    ``resource`` is a VISA resource string (``TCPIP0::10.0.0.5::5025::SOCKET``, ``USB0::...``,
    ``ASRL/dev/ttyUSB0::INSTR``); ``profile`` a vendor profile name or object. Call ``open()`` first.
    """

    def __init__(
        self, resource: str, profile: str | ScpiProfile, limits: SoftLimits, *, name: str = "power source",
        timeout_ms: int = 2000, transport: Transport | None = None,
    ) -> None:
        self.resource = resource
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.limits = limits
        self.name = name
        self.timeout_ms = timeout_ms
        self.transcript: deque[tuple[float, str, str]] = deque(maxlen=10_000)
        """Recent exchanges as ``(time.time(), '>' sent | '<' received, text)``."""
        self._lock = threading.RLock()
        self._io: Transport | None = transport
        self._owns_session = transport is None
        self._rm: Any = None
        self._last_io = time.monotonic()
        self._output_on = False

    def __repr__(self) -> str:
        return f"PowerSource({self.name!r}, {self.resource!r}, {self.profile.name!r})"

    # -- session ------------------------------------------------------------------------------------
    def open(self) -> "PowerSource":
        """Connect, take remote control where the vendor needs it, clear status. Idempotent."""
        with self._lock:
            if self._io is None:
                self._connect()
            self._take_remote()
            self._write(self.profile.commands.clear_status)
            self._output_on = self._query_output()
        return self

    def _connect(self) -> None:
        import pyvisa

        try:
            if self._rm is None:
                self._rm = pyvisa.ResourceManager("@py")
            self._io = self._rm.open_resource(
                self.resource, read_termination="\n", write_termination="\n", timeout=self.timeout_ms
            )
        except Exception as exc:  # noqa: BLE001 - pyvisa raises many kinds; all mean "not reachable"
            self._io = None
            raise InstrumentUnreachable(self.name, self.resource, f"cannot open: {_reason(exc)}") from exc
        self._last_io = time.monotonic()

    def _take_remote(self) -> None:
        if self.profile.commands.lock:
            self._write(self.profile.commands.lock)

    def close(self) -> None:
        """Give remote control back and close the session. Does not change the output: call ``safe_state()``."""
        with self._lock:
            if self._io is None:
                return
            try:
                if self.profile.commands.unlock:
                    self._write(self.profile.commands.unlock)
            except Exception as exc:  # noqa: BLE001 - closing goes on
                log.debug("%s: unlock failed: %s", self.name, exc)
            try:
                self._io.close()
            finally:
                self._io = None

    def __enter__(self) -> "PowerSource":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        try:
            self.safe_state()
        finally:
            self.close()

    # -- raw I/O ------------------------------------------------------------------------------------
    def write(self, command: str) -> None:
        """Send a command as is (no soft-limit check: prefer the typed methods)."""
        with self._lock:
            self._write(command)

    def query(self, command: str) -> str:
        """Send a query and return the reply line."""
        with self._lock:
            return self._query(command)

    def _ready(self) -> Transport:
        if self._io is None:
            self._connect()
            self._take_remote()
        p = self.profile
        since = time.monotonic() - self._last_io
        if p.idle_timeout_s is not None and since > p.idle_timeout_s * 0.8:
            # The instrument closes idle sockets; reconnect before it does rather than lose a command.
            self._reconnect("idle")
        elif since < p.message_gap_s:
            time.sleep(p.message_gap_s - since)
        assert self._io is not None
        return self._io

    def _reconnect(self, why: str) -> None:
        log.info("%s: reconnecting (%s)", self.name, why)
        if self._io is not None:
            try:
                self._io.close()
            except Exception:  # noqa: BLE001
                pass
        self._io = None
        self._connect()
        self._take_remote()

    def _write(self, command: str) -> None:
        io = self._ready()
        self.transcript.append((time.time(), ">", command))
        try:
            io.write(command)
        except Exception as exc:  # noqa: BLE001
            raise self._io_error(command, exc) from exc
        self._last_io = time.monotonic()

    def _query(self, command: str, retry: bool = True) -> str:
        try:
            self._write(command)
            reply = self._io.read()  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            error = exc if isinstance(exc, InstrumentUnreachable) else self._io_error(command, exc)
            if retry and self._owns_session:
                # A dropped socket looks like a timeout to pyvisa-py: retry once on a fresh connection.
                self._reconnect(str(error))
                return self._query(command, retry=False)
            raise error from exc
        self._last_io = time.monotonic()
        self.transcript.append((time.time(), "<", reply))
        return reply

    def _io_error(self, command: str, exc: Exception) -> InstrumentUnreachable:
        text = _reason(exc)
        if "TMO" in text or "timeout" in text.lower():
            return InstrumentUnreachable(self.name, self.resource, f"no reply to {command!r} within {self.timeout_ms} ms")
        if "refused" in text.lower():
            return InstrumentUnreachable(self.name, self.resource, f"cannot open: connection refused ({text})")
        return InstrumentUnreachable(self.name, self.resource, f"connection lost on {command!r}: {text}")

    # -- parsing ------------------------------------------------------------------------------------
    def _number(self, text: str, command: str) -> float:
        m = _NUMBER.match(text)
        if not m:
            raise InstrumentProtocolError(self.name, self.resource, f"{command!r} answered {text!r}, not a number")
        return float(m.group(1))

    def _numbers(self, text: str, command: str, count: int) -> list[float]:
        parts = re.split(r"[;,]", text)
        if len(parts) != count:
            raise InstrumentProtocolError(self.name, self.resource, f"{command!r} answered {text!r}: expected {count} values")
        return [self._number(p, command) for p in parts]

    def _boolean(self, text: str, command: str) -> bool:
        t = text.strip().upper()
        if t in ("1", "ON", self.profile.reply.on.upper()):
            return True
        if t in ("0", "OFF", self.profile.reply.off.upper()):
            return False
        raise InstrumentProtocolError(self.name, self.resource, f"{command!r} answered {text!r}, not ON/OFF")

    # -- identity and errors ------------------------------------------------------------------------
    def identify(self) -> Identity:
        """Ask ``*IDN?``. Raises if the instrument is not of the profile's maker."""
        raw = self.query(self.profile.commands.identify).strip()
        fields = [f.strip() for f in raw.split(",")]
        if len(fields) < 4:
            raise InstrumentProtocolError(self.name, self.resource, f"*IDN? answered {raw!r}: expected maker,model,serial,firmware")
        identity = Identity(fields[0], fields[1], fields[2], fields[3], raw)
        if not identity.maker.lower().startswith(self.profile.maker.lower()[:8]):
            raise InstrumentProtocolError(
                self.name, self.resource,
                f"identifies as {identity.maker} {identity.model}, but the rig names profile {self.profile.name!r} ({self.profile.maker})",
            )
        return identity

    def errors(self) -> list[tuple[int, str]]:
        """Drain the error queue; ``[]`` when empty. (EA: this also acknowledges latched alarms.)"""
        out: list[tuple[int, str]] = []
        with self._lock:
            for _ in range(self.profile.error_queue_length + 1):
                reply = self._query(self.profile.commands.next_error)
                code_text, _, message = reply.partition(",")
                try:
                    code = int(code_text)
                except ValueError:
                    raise InstrumentProtocolError(self.name, self.resource, f"SYST:ERR? answered {reply!r}") from None
                if code == 0:
                    break
                out.append((code, message.strip().strip('"')))
        return out

    def _check(self, command: str, esr_text: str) -> None:
        """Raise the instrument's first queued error if ``*ESR?`` shows one."""
        esr = int(self._number(esr_text, "*ESR?"))
        if esr & 0x3C:
            errors = self.errors()
            code, message = errors[0] if errors else (0, f"*ESR? = {esr} after {command!r}")
            raise InstrumentReportedError(self.name, self.resource, code, f"{message} (after {command!r})")

    # -- set points ---------------------------------------------------------------------------------
    def set_voltage(self, volts: float) -> None:
        """Voltage set point [V], ramped at the soft-limit rate while the output is on."""
        self._limit("voltage", volts)
        c = self.profile.commands
        with self._lock:
            if self._output_on:
                self._ramp(c.set_voltage, c.voltage_setpoint, volts)
            else:
                self._set(c.set_voltage, c.voltage_setpoint, volts)

    def set_current(self, amps: float) -> None:
        """Current limit / set point [A], ramped at the soft-limit rate while the output is on."""
        self._limit("current", amps)
        c = self.profile.commands
        with self._lock:
            if self._output_on:
                self._ramp(c.set_current, c.current_setpoint, amps)
            else:
                self._set(c.set_current, c.current_setpoint, amps)

    def set_power(self, watts: float) -> None:
        """Power limit [W]."""
        self._limit("power", watts)
        c = self.profile.commands
        if c.set_power is None or c.power_setpoint is None:
            raise InstrumentProtocolError(self.name, self.resource, f"profile {self.profile.name} has no power set point")
        with self._lock:
            self._set(c.set_power, c.power_setpoint, watts)

    def voltage_setpoint(self) -> float:
        """The voltage set point the instrument holds [V]."""
        return self._number(self.query(self.profile.commands.voltage_setpoint), "voltage set point")

    def current_setpoint(self) -> float:
        """The current set point the instrument holds [A]."""
        return self._number(self.query(self.profile.commands.current_setpoint), "current set point")

    def _limit(self, quantity: str, value: float) -> None:
        reason = self.limits.check(quantity, value)
        if reason is not None:
            raise SoftLimitError(self.name, self.resource, f"refused: {reason} (soft limit from the rig file)")

    def _set(self, template: str, readback: str, value: float) -> float:
        """Write a set point with its read-back and an error check in one message; verify what was kept."""
        command = template.format(value=value)
        reply = self._query(f"{command};{_absolute(readback)};*ESR?")
        parts = re.split(r";", reply)
        if len(parts) != 2:
            raise InstrumentProtocolError(self.name, self.resource, f"{command!r} with read-back answered {reply!r}")
        self._check(command, parts[1])
        kept = self._number(parts[0], readback)
        if abs(kept - value) > max(0.01, abs(value) * 1e-4):
            raise InstrumentReportedError(
                self.name, self.resource, -222, f"{command!r} not accepted: the instrument kept {kept:g}"
            )
        return kept

    def _ramp(self, template: str, readback: str, target: float) -> None:
        start = self._number(self._query(readback), readback)
        step = max(self.limits.ramp * RAMP_STEP_S, 1e-6)
        value = start
        while abs(target - value) > step:
            value += step if target > value else -step
            self._set(template, readback, value)
            time.sleep(RAMP_STEP_S)
        self._set(template, readback, target)

    # -- output -------------------------------------------------------------------------------------
    def output(self, on: bool) -> None:
        """Switch the output. Refuses to switch on while a protection is latched (``ProtectionTripped``)."""
        c = self.profile.commands
        with self._lock:
            if on:
                causes = self._protections()
                if causes:
                    raise ProtectionTripped(self.name, self.resource, sorted(causes))
                reply = self._query(f"{c.output_on};{_absolute(c.output_state)};*ESR?")
                state, esr = reply.split(";")
                self._output_on = self._boolean(state, c.output_state)
                self._check(c.output_on, esr)
                if not self._output_on:
                    raise ProtectionTripped(self.name, self.resource, sorted(self._protections()) or ["output refused"])
            else:
                self._write(c.output_off)
                self._output_on = False

    def is_output_on(self) -> bool:
        with self._lock:
            self._output_on = self._query_output()
            return self._output_on

    def _query_output(self) -> bool:
        c = self.profile.commands
        return self._boolean(self._query(c.output_state), c.output_state)

    def measure(self) -> Measurement:
        """Measured output voltage [V], current [A] and power [W]."""
        c = self.profile.commands
        v, i, p = self._numbers(self.query(c.measure), c.measure, 3)
        return Measurement(v, i, p)

    # -- protections --------------------------------------------------------------------------------
    def configure_protections(self) -> None:
        """Set hardware protections a margin above the soft limits, so a driver bug still trips the hardware.

        OVP (and OCP, OPP where the vendor has a trip level) at ``limit x (1 + protection_margin)``.
        Keysight's OCP trips on entering constant current and is left to the test to enable.
        """
        margin = 1.0 + self.limits.protection_margin
        c = self.profile.commands
        with self._lock:
            self._set(c.set_ovp, c.ovp, self.limits.voltage * margin)
            if c.set_ocp:
                self._set_level(c.set_ocp, self.limits.current * margin)
            if c.set_opp:
                self._set_level(c.set_opp, self.limits.power * margin)

    def _set_level(self, template: str, value: float) -> None:
        command = template.format(value=value)
        self._check(command, self._query(f"{command};*ESR?"))

    def set_ovp(self, volts: float) -> None:
        """Over-voltage protection level [V]. Lower than the soft limit is always allowed."""
        c = self.profile.commands
        with self._lock:
            self._set(c.set_ovp, c.ovp, volts)

    def enable_ocp(self, on: bool = True) -> None:
        """Keysight: trip when the output enters constant current. Level-based vendors: use ``configure_protections``."""
        c = self.profile.commands
        command = c.enable_ocp if on else c.disable_ocp
        if command is None:
            raise InstrumentProtocolError(self.name, self.resource, f"profile {self.profile.name} has no OCP switch")
        with self._lock:
            self._check(command, self._query(f"{command};*ESR?"))

    def protection_status(self) -> set[str]:
        """Latched protections now: a subset of ``{"OV", "OC", "OP", "OT", "INH", "PF", "WDOG"}``."""
        with self._lock:
            return self._protections()

    def _protections(self) -> set[str]:
        c = self.profile.commands
        return self.profile.protection_causes(int(self._number(self._query(c.questionable), c.questionable)))

    def clear_protection(self) -> None:
        """Clear latched protections (an explicit, logged decision). The output stays off."""
        log.warning("%s: clearing latched protections %s", self.name, sorted(self.protection_status()))
        with self._lock:
            if self.profile.commands.clear_protection:
                self._write(self.profile.commands.clear_protection)
            if self.profile.error_query_clears_alarms:
                self.errors()

    def enable_watchdog(self, delay_s: float) -> None:
        """Latch the output off if no SCPI I/O arrives for ``delay_s`` seconds (where the vendor has one)."""
        c = self.profile.commands
        if c.watchdog is None:
            raise InstrumentProtocolError(self.name, self.resource, f"profile {self.profile.name} has no I/O watchdog")
        with self._lock:
            command = c.watchdog.format(value=delay_s)
            self._check(command, self._query(f"{command};*ESR?"))

    # -- waiting ------------------------------------------------------------------------------------
    def wait_for_voltage(self, volts: float, tolerance: float, timeout: float) -> float:
        """Poll until the measured voltage is within ``tolerance`` [V] of ``volts``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.measure_voltage()
            if abs(v - volts) <= tolerance:
                return v
            if time.monotonic() > deadline:
                raise InstrumentReportedError(
                    self.name, self.resource, 0, f"output at {v:g} V, not {volts:g} +/- {tolerance:g} V after {timeout:g} s"
                )
            time.sleep(0.02)

    def wait_for_output_off(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.is_output_on():
            if time.monotonic() > deadline:
                raise InstrumentReportedError(self.name, self.resource, 0, f"output still on after {timeout:g} s")
            time.sleep(0.02)

    def measure_voltage(self) -> float:
        """Measured output voltage [V] (one short query)."""
        c = self.profile.commands
        return self._number(self.query(c.measure_voltage), c.measure_voltage)

    # -- safety -------------------------------------------------------------------------------------
    def safe_state(self, timeout: float = 5.0) -> None:
        """Ramp the current down, switch the output off, and verify: ``OUTP?`` off, voltage below 60 V.

        Raises ``UnsafeStateError`` if the output cannot be verified off within ``timeout`` seconds.
        Reconnects once if the session was lost: the point is the instrument's state, not the session's.
        """
        with self._lock:
            try:
                self._safe_state(timeout)
            except UnsafeStateError:
                raise
            except Exception as first:  # noqa: BLE001 - one retry on a fresh connection
                log.warning("%s: safe state failed (%s); retrying on a new connection", self.name, first)
                try:
                    self._reconnect("safe state")
                    self._safe_state(timeout)
                except Exception as exc:  # noqa: BLE001
                    raise UnsafeStateError(self.name, self.resource, f"output not verified off: {exc}") from exc

    def _safe_state(self, timeout: float) -> None:
        c = self.profile.commands
        if self._query_output():
            self._output_on = True
            try:
                self._ramp(c.set_current, c.current_setpoint, 0.0)
            except InstrumentReportedError as exc:
                log.warning("%s: ramp down refused (%s); switching off directly", self.name, exc)
        self._write(c.output_off)
        self._output_on = False
        deadline = time.monotonic() + timeout
        while True:
            on = self._query_output()
            volts = self._number(self._query(c.measure_voltage), c.measure_voltage)
            if not on and volts < TOUCH_SAFE_VOLTAGE:
                return
            if time.monotonic() > deadline:
                raise UnsafeStateError(
                    self.name, self.resource, f"after {timeout:g} s output is {'on' if on else 'off'} at {volts:g} V"
                )
            if on:
                self._write(c.output_off)
            time.sleep(0.02)

    # -- asyncio side -------------------------------------------------------------------------------
    async def aset_voltage(self, volts: float) -> None:
        await asyncio.to_thread(self.set_voltage, volts)

    async def aset_current(self, amps: float) -> None:
        await asyncio.to_thread(self.set_current, amps)

    async def aoutput(self, on: bool) -> None:
        await asyncio.to_thread(self.output, on)

    async def ameasure(self) -> Measurement:
        return await asyncio.to_thread(self.measure)

    async def asafe_state(self) -> None:
        await asyncio.to_thread(self.safe_state)


def _absolute(command: str) -> str:
    """``VOLT?`` -> ``:VOLT?`` so it resolves from the root inside a compound message."""
    return command if command.startswith((":", "*")) else ":" + command


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
