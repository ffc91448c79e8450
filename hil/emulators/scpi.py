"""An emulated SCPI power source on a raw TCP socket, backed by one port's power stage in the plant.

``ScpiInstrument`` is the device: a strict parser (``scpi_parser``), the vendor profile's command tree,
the IEEE 488.2 error queue and status registers (ESR, STB, questionable and operation), latching
protections, remote lock and watchdog. ``ScpiEmulator`` serves it on ``127.0.0.1`` (a free port by
default) as ``TCPIP0::127.0.0.1::PORT::SOCKET``, one line per message, with latency and fault injection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from hil.emulators.faults import Faults
from hil.emulators.scpi_parser import (
    ERROR_TEXT, Command, Pattern, ScpiError, keyword, parse_bool, parse_header, parse_message, parse_number,
    split_params,
)
from hil.instruments.scpi_profile import ScpiProfile, load_profile
from hil.plant import Plant, PowerStage, Protection
from hil.plant.power_stage import Regulation

log = logging.getLogger(__name__)

_serials = itertools.count(100001)


@dataclass(frozen=True)
class _Numeric:
    """A numeric setting: stage attribute, unit, and range as functions of the rating."""

    attr: str
    unit: str
    low: Callable[[ScpiProfile], float]
    high: Callable[[ScpiProfile], float]
    default: Callable[[ScpiProfile], float]


_NUMERIC: dict[str, _Numeric] = {
    "voltage_setpoint": _Numeric("voltage_setpoint", "V", lambda p: 0.0, lambda p: p.rated.voltage * 1.02, lambda p: 0.0),
    "current_setpoint": _Numeric("current_setpoint", "A", lambda p: 0.0, lambda p: p.rated.current * 1.02, lambda p: 0.0),
    "power_setpoint": _Numeric("power_setpoint", "W", lambda p: 0.0, lambda p: p.rated.power * 1.02, lambda p: p.rated.power),
    "ovp_level": _Numeric("ovp_level", "V", lambda p: 0.0, lambda p: p.rated.voltage * 1.1, lambda p: p.rated.voltage * 1.1),
    "ocp_level": _Numeric("ocp_level", "A", lambda p: 0.0, lambda p: p.rated.current * 1.1, lambda p: p.rated.current * 1.1),
    "opp_level": _Numeric("opp_level", "W", lambda p: 0.0, lambda p: p.rated.power * 1.1, lambda p: p.rated.power * 1.1),
    "sink_current": _Numeric("sink_current", "A", lambda p: 0.0, lambda p: p.rated.current * 1.02, lambda p: 0.0),
    "sink_power": _Numeric("sink_power", "W", lambda p: 0.0, lambda p: p.rated.power * 1.02, lambda p: 0.0),
    "watchdog_delay": _Numeric("watchdog_delay", "S", lambda p: 1.0, lambda p: 3600.0, lambda p: 60.0),
}
_SET_ONLY_EVENTS = {"clear_protection"}
_QUERY_ONLY = {"measure_voltage", "measure_current", "measure_power", "measure_array", "lock_owner", "error_all",
               "inhibit_state", "next_error", "error_count", "version", "ques_event", "ques_condition", "oper_event",
               "oper_condition"}
_BOOLEANS = {"output": "output_on", "ocp_state": "ocp_enabled", "lock": "locked", "watchdog_state": "watchdog_on"}

_COMMON_TREE = {
    "SYSTem:ERRor[:NEXT]?": "next_error",
    "SYSTem:ERRor:COUNt?": "error_count",
    "SYSTem:VERSion?": "version",
    "STATus:QUEStionable[:EVENt]?": "ques_event",
    "STATus:QUEStionable:CONDition?": "ques_condition",
    "STATus:QUEStionable:ENABle": "ques_enable",
    "STATus:OPERation[:EVENt]?": "oper_event",
    "STATus:OPERation:CONDition?": "oper_condition",
    "STATus:OPERation:ENABle": "oper_enable",
    "STATus:PRESet": "status_preset",
}


class ScpiInstrument:
    """The emulated instrument's behaviour, without a transport: ``handle(message) -> reply or None``."""

    def __init__(self, plant: Plant, port: str, profile: ScpiProfile | str, faults: Faults | None = None) -> None:
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.plant = plant
        self.port = port
        self.stage: PowerStage = plant.port(port).stage
        self.faults = faults or Faults()
        self.serial = f"{next(_serials):06d}"
        self.errors: deque[tuple[int, str]] = deque()
        self.esr = 0
        self.ese = 0
        self.sre = 0
        self.ques_event = 0
        self.ques_enable = 0
        self.oper_event = 0
        self.oper_enable = 0
        self._last_ques = 0
        self._last_oper = 0
        self.locked = False
        self.watchdog_on = False
        self.watchdog_delay = 60.0
        self.sink_current = 0.0
        self.sink_power = 0.0
        self.last_io = time.monotonic()
        self._frozen: tuple[float, float] | None = None
        self._tree = [(Pattern.compile(k), v) for k, v in {**_COMMON_TREE, **self.profile.tree}.items()]
        with plant.lock:
            self.stage.rated_voltage = self.profile.rated.voltage
            self.stage.rated_current = self.profile.rated.current
            self.stage.rated_power = self.profile.rated.power
            self._reset()

    # -- message handling ---------------------------------------------------------------------------
    def handle(self, message: str) -> str | None:
        """Execute one program message; return the response message (without terminator) or None."""
        self.tick()
        self.last_io = time.monotonic()
        responses: list[str] = []
        path: tuple[str, ...] = ()
        try:
            units = parse_message(message)
        except ScpiError as exc:
            self.push_error(exc.code, exc.detail)
            return None
        for header, param_text in units:
            try:
                command, path = parse_header(header, path)
                params = split_params(param_text)
                command = Command(command.header, command.mnemonics, command.query, params, command.common)
                reply = self._execute(command)
            except ScpiError as exc:
                self.push_error(exc.code, exc.detail)
                if -199 <= exc.code <= -100:
                    break  # a command error discards the rest of the message
                continue
            except Exception as exc:  # noqa: BLE001 - a crash must become an error, not a client timeout
                log.exception("SCPI emulator failed on %r", header)
                self.push_error(-300, f"device-specific error: {exc}")
                continue
            if reply is not None:
                responses.append(reply)
        return ";".join(responses) if responses else None

    def push_error(self, code: int, detail: str = "") -> None:
        """Append to the error queue (overflow replaces the last entry with -350) and set the ESR bit."""
        text = ERROR_TEXT.get(code, "Error") + (f"; {detail}" if detail else "")
        if len(self.errors) >= self.profile.error_queue_length:
            self.errors[-1] = (-350, ERROR_TEXT[-350])
        else:
            self.errors.append((code, text))
        if -199 <= code <= -100:
            self.esr |= 0x20
        elif -299 <= code <= -200:
            self.esr |= 0x10
        elif -399 <= code <= -300:
            self.esr |= 0x08
        elif -499 <= code <= -400:
            self.esr |= 0x04

    def _execute(self, cmd: Command) -> str | None:
        if cmd.common:
            return self._common(cmd)
        action = self._resolve(cmd)
        if cmd.query:
            if action in _SET_ONLY_EVENTS or action == "status_preset":
                raise ScpiError(-113, f"{cmd.header} has no query form")
            if cmd.params:
                raise ScpiError(-108, cmd.header)
            return self._query(action)
        if action in _QUERY_ONLY:
            raise ScpiError(-113, f"{cmd.header} is a query only")
        self._check_remote(action)
        self._set(action, cmd.params)
        return None

    def _resolve(self, cmd: Command) -> str:
        words = list(cmd.mnemonics)
        for pattern, action in self._tree:
            if pattern.query_only and not cmd.query:
                continue
            if pattern.match(words):
                return action
        raise ScpiError(-113, cmd.header)

    def _check_remote(self, action: str) -> None:
        if self.profile.requires_lock and not self.locked and action != "lock" and action not in {
            "ques_enable", "oper_enable", "status_preset",
        }:
            raise ScpiError(-221, "remote control not taken (SYST:LOCK ON)")

    # -- common commands ----------------------------------------------------------------------------
    def _common(self, cmd: Command) -> str | None:
        name = cmd.mnemonics[0]
        q = cmd.query
        if (name, q) == ("*IDN", True):
            return self.profile.idn.format(serial=self.serial)
        if (name, q) == ("*RST", False):
            with self.plant.lock:
                self._reset()
            return None
        if (name, q) == ("*CLS", False):
            self.errors.clear()
            self.esr = self.ques_event = self.oper_event = 0
            return None
        if (name, q) == ("*OPC", True):
            return "1"
        if (name, q) == ("*OPC", False):
            self.esr |= 0x01
            return None
        if (name, q) == ("*WAI", False):
            return None
        if (name, q) == ("*ESR", True):
            value, self.esr = self.esr, 0
            return str(value)
        if (name, q) == ("*STB", True):
            return str(self._stb())
        if (name, q) == ("*TST", True):
            return "0"
        if name in ("*ESE", "*SRE"):
            attr = name[1:].lower()
            if q:
                return str(getattr(self, attr))
            if len(cmd.params) != 1:
                raise ScpiError(-109 if not cmd.params else -108, cmd.header)
            setattr(self, attr, int(parse_number(cmd.params[0], "")) & 0xFF)
            return None
        raise ScpiError(-113, cmd.header)

    def _stb(self) -> int:
        self._update_events()
        stb = 0
        if self.errors:
            stb |= 0x04
        if self.ques_event & self.ques_enable:
            stb |= 0x08
        if self.esr & self.ese:
            stb |= 0x20
        if self.oper_event & self.oper_enable:
            stb |= 0x80
        if stb & self.sre:
            stb |= 0x40
        return stb

    # -- settings -----------------------------------------------------------------------------------
    def _set(self, action: str, params: tuple[str, ...]) -> None:
        if action in _SET_ONLY_EVENTS or action == "status_preset":
            if params:
                raise ScpiError(-108, action)
            if action == "clear_protection":
                with self.plant.lock:
                    self.stage.clear_protection()
            else:
                self.ques_enable = self.oper_enable = 0
            return
        if not params:
            raise ScpiError(-109)
        if len(params) > 1:
            raise ScpiError(-108, ", ".join(params[1:]))
        text = params[0]
        if action in ("ques_enable", "oper_enable"):
            setattr(self, action, int(parse_number(text, "")) & 0xFFFF)
            return
        if action in _BOOLEANS:
            self._set_bool(action, parse_bool(text))
            return
        spec = _NUMERIC[action]
        kw = keyword(text)
        p = self.profile
        if kw is not None:
            value = {"MIN": spec.low(p), "MAX": spec.high(p), "DEF": spec.default(p)}[kw]
        else:
            value = parse_number(text, spec.unit)
        if not spec.low(p) <= value <= spec.high(p):
            if p.out_of_range == "error":
                raise ScpiError(-222, f"{value:g} {spec.unit} outside {spec.low(p):g}..{spec.high(p):g}")
            return  # EA: silently not applied
        if action in ("watchdog_delay", "sink_current", "sink_power"):
            setattr(self, spec.attr, value)
            return
        with self.plant.lock:
            setattr(self.stage, spec.attr, value)

    def _set_bool(self, action: str, value: bool) -> None:
        if action == "lock":
            self.locked = value
            return
        if action == "watchdog_state":
            self.watchdog_on = value
            return
        with self.plant.lock:
            if action == "output" and value and self.stage.tripped:
                raise ScpiError(-221, f"protection latched: {', '.join(sorted(t.value for t in self.stage.tripped))}")
            setattr(self.stage, _BOOLEANS[action], value)
            if action == "ocp_state":
                self.stage.ocp_on_cc = value and self.profile.ocp_mode == "limit"

    def _reset(self) -> None:
        """*RST: output off, set points to defaults, protections to their defaults (EA: also lock)."""
        p = self.profile
        s = self.stage
        s.output_on = False
        for action, spec in _NUMERIC.items():
            if action in ("watchdog_delay", "sink_current", "sink_power"):
                setattr(self, spec.attr, spec.default(p))
            else:
                setattr(s, spec.attr, spec.default(p))
        s.ocp_enabled = p.ocp_mode == "level"
        s.ocp_on_cc = False
        self.watchdog_on = False
        if p.requires_lock:
            self.locked = True
            s.clear_protection()

    # -- queries ------------------------------------------------------------------------------------
    def _number(self, value: float, unit: str) -> str:
        return self.profile.reply.number.format(value=value, unit=unit)

    def _query(self, action: str) -> str:
        p = self.profile
        if action == "next_error":
            if p.error_query_clears_alarms:
                with self.plant.lock:
                    self.stage.clear_protection()
            code, text = self.errors.popleft() if self.errors else (0, ERROR_TEXT[0])
            return p.reply.error.format(code=code, message=text)
        if action == "error_all":
            entries = list(self.errors) or [(0, ERROR_TEXT[0])]
            self.errors.clear()
            return ",".join(p.reply.error.format(code=c, message=t) for c, t in entries)
        if action == "error_count":
            return str(len(self.errors))
        if action == "version":
            return "1999.0"
        if action in ("ques_condition", "ques_event", "oper_condition", "oper_event"):
            self._update_events()
            if action == "ques_condition":
                return str(self._last_ques)
            if action == "oper_condition":
                return str(self._last_oper)
            value = getattr(self, action)
            setattr(self, action, 0)
            return str(value)
        if action in ("ques_enable", "oper_enable"):
            return str(getattr(self, action))
        if action == "lock_owner":
            return "REMOTE" if self.locked else "NONE"
        if action == "inhibit_state":
            return "LATC"
        if action.startswith("measure_"):
            v, i = self._measured()
            if action == "measure_voltage":
                return self._number(v, "V")
            if action == "measure_current":
                return self._number(i, "A")
            if action == "measure_power":
                return self._number(v * i, "W")
            return ", ".join((self._number(v, "V"), self._number(i, "A"), self._number(v * i, "W")))
        if action in _BOOLEANS:
            if action in ("lock", "watchdog_state"):
                on = getattr(self, _BOOLEANS[action])
            else:
                with self.plant.lock:
                    on = getattr(self.stage, _BOOLEANS[action])
            return p.reply.on if on else p.reply.off
        spec = _NUMERIC[action]
        if action in ("watchdog_delay", "sink_current", "sink_power"):
            return self._number(getattr(self, spec.attr), spec.unit)
        with self.plant.lock:
            return self._number(getattr(self.stage, spec.attr), spec.unit)

    def _measured(self) -> tuple[float, float]:
        if self.faults.frozen and self._frozen is not None:
            return self._frozen
        with self.plant.lock:
            v, i = self.stage.voltage, self.stage.current
        v, i = v * self.faults.gain, i * self.faults.gain
        self._frozen = (v, i)
        return v, i

    def _update_events(self) -> None:
        bits = self.profile.questionable_bits
        with self.plant.lock:
            tripped = {t.value for t in self.stage.tripped}
            on = self.stage.output_on
            regulation = self.stage.regulation
        ques = 0
        for name, bit in bits.items():
            if name in tripped or (name == "REMOTE" and self.locked) or (name == "OUTPUT" and on):
                ques |= 1 << bit
        oper = 0
        obits = self.profile.operation_bits
        if regulation.value in obits:
            oper |= 1 << obits[regulation.value]
        if regulation is Regulation.OFF and "OFF" in obits:
            oper |= 1 << obits["OFF"]
        self.ques_event |= ques & ~self._last_ques
        self.oper_event |= oper & ~self._last_oper
        self._last_ques, self._last_oper = ques, oper

    def tick(self) -> None:
        """Latch the output off if the watchdog is on and no I/O arrived within its delay."""
        if self.watchdog_on and time.monotonic() - self.last_io > self.watchdog_delay:
            with self.plant.lock:
                self.stage.trip(Protection.WATCHDOG)


class ScpiEmulator:
    """Serves a ``ScpiInstrument`` on a raw TCP socket (VISA ``TCPIP0::HOST::PORT::SOCKET``).

    ``latency`` [s] is added before every reply (default: the profile's, near the real instrument);
    ``faults`` is consulted on every message. Only one message is executed at a time, as on a real unit.
    """

    def __init__(
        self, plant: Plant, port: str, profile: ScpiProfile | str, *, host: str = "127.0.0.1", tcp_port: int = 0,
        latency: float | None = None,
    ) -> None:
        self.faults = Faults()
        self._random = random.Random(port)  # ``faults.loss``: the same losses on every run
        self.instrument = ScpiInstrument(plant, port, profile, self.faults)
        self.profile = self.instrument.profile
        self.latency = self.profile.latency_s if latency is None else latency
        self.host = host
        self.port = tcp_port
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._busy = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def resource(self) -> str:
        """The VISA resource string a client opens."""
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"

    async def start(self) -> None:
        self._busy = asyncio.Lock()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    def trip(self, cause: Protection) -> None:
        """Inject a protection trip (over-temperature, inhibit, power fail, ...): latches like a real one."""
        with self.instrument.plant.lock:
            self.instrument.stage.trip(cause)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self.instrument.tick()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.drop_connection:
            writer.close()
            return
        self._writers.add(writer)
        idle = self.profile.idle_timeout_s
        try:
            while True:
                try:
                    line = await (asyncio.wait_for(reader.readline(), idle) if idle else reader.readline())
                except asyncio.TimeoutError:
                    log.info("%s: closing idle connection after %.1f s", self.resource, idle)
                    break
                if not line:
                    break
                if self.faults.drop_connection:
                    break
                if self.faults.no_reply or (self.faults.loss > 0 and self._random.random() < self.faults.loss):
                    self.faults.swallowed += 1
                    continue
                try:
                    message = line.decode("ascii").rstrip("\r\n")
                except UnicodeDecodeError:
                    self.instrument.push_error(-102, "non-ASCII bytes")
                    continue
                async with self._busy:
                    delay = self.latency + self.faults.latency + self.faults.late_reply
                    if delay > 0:
                        await asyncio.sleep(delay)
                    reply = self.instrument.handle(message)
                if reply is None:
                    continue
                if self.faults.garbage_reply:
                    reply = "\x15#?garbled\x7f" + reply[::-1]
                writer.write(reply.encode("ascii", "replace") + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # client gone, or the emulator is stopping
        finally:
            self._writers.discard(writer)
            writer.close()
