"""Driver for a CHAdeMO EV simulator on any python-can interface (socketcan, pcan, kvaser, vector,
socketcand, virtual).

It listens to everything on the bus (the EV's 0x100/0x101/0x102, the charger's 0x108/0x109) and keeps the
latest decoded frame of each with its measured rate; it controls the simulator through evhil's
``EVSIM_Control`` message and waits for the ``EVSIM_Status`` that echoes the command's sequence number.
Units: V, A, %, kWh, seconds, Hz. Thread-safe: one lock per instrument.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import can

from hil.instruments.chademo import (
    CHARGER_CAPABILITY, CHARGER_STATUS, EV_LIMITS, EV_REQUEST, EV_TIMES, FAULT_SIGNALS, SILENCE_BITS, SIM_CONTROL,
    SIM_STATUS, SimCommand, SimState, load_dbc,
)
from hil.instruments.errors import InstrumentProtocolError, InstrumentUnreachable

log = logging.getLogger(__name__)
logging.getLogger("can.interfaces.socketcand.socketcand").setLevel(logging.ERROR)  # floods on every TCP segment

_NO_BITRATE = {"socketcand", "virtual", "udp_multicast", "remote"}
"""Interfaces where the bitrate is the server's business, not the client's."""


@dataclass(frozen=True)
class EVIdentity:
    """What was heard on the bus: frame id -> rate [Hz], and the EV's protocol number and SoC."""

    frames_seen: dict[int, float]
    protocol: int | None
    soc: float | None

    @property
    def summary(self) -> str:
        rates = ", ".join(f"0x{i:03X} {hz:.1f} Hz" for i, hz in sorted(self.frames_seen.items()))
        soc = f", SoC {self.soc:.0f} %" if self.soc is not None else ""
        return f"CHAdeMO EV protocol {self.protocol}: {rates}{soc}"


@dataclass(frozen=True)
class EVStatus:
    """The EV's latest 0x100/0x101/0x102."""

    target_voltage: float
    current_request: float
    soc: float
    max_voltage: float
    capacity_kwh: float
    faults: frozenset[str]
    charging_enabled: bool
    contactor_open: bool
    stop_request: bool


@dataclass(frozen=True)
class ChargerStatus:
    """The charger's latest 0x108/0x109."""

    available_voltage: float
    available_current: float
    present_voltage: float
    present_current: float
    charging: bool
    malfunction: bool
    energised: bool
    battery_incompatible: bool
    system_malfunction: bool
    stop_control: bool


@dataclass(frozen=True)
class SimulatorStatus:
    """The simulator's answer to a control command (``EVSIM_Status``)."""

    state: SimState
    soc: float
    battery_current: float
    contactor_closed: bool
    plugged_in: bool


class EVSimulator:
    """A CHAdeMO EV simulator reached through python-can.

    ``bus_kwargs`` go to ``can.Bus`` as they are (``host``/``port`` for socketcand, ``app_name`` for
    vector, ...). Call ``open()`` first.
    """

    def __init__(
        self, *, interface: str, channel: str, bitrate: int = 500_000, name: str = "ev", dbc: str = "chademo",
        bus_kwargs: dict[str, Any] | None = None, reply_timeout: float = 1.0,
    ) -> None:
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.name = name
        self.db = load_dbc(dbc)
        self.bus_kwargs = dict(bus_kwargs or {})
        self.reply_timeout = reply_timeout
        self.trace: deque[can.Message] = deque(maxlen=10_000)
        """Recent frames in both directions (for candump-style traces)."""
        self._lock = threading.RLock()
        self._seen = threading.Condition()
        self._latest: dict[int, dict[str, float]] = {}
        self._stamps: dict[int, deque[float]] = {}
        self._replies: dict[int, SimulatorStatus] = {}
        self._sequence = 0
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None

    @property
    def address(self) -> str:
        where = f" {self.bus_kwargs['host']}:{self.bus_kwargs['port']}" if "host" in self.bus_kwargs else ""
        return f"{self.interface}{where} channel {self.channel}"

    def __repr__(self) -> str:
        return f"EVSimulator({self.name!r}, {self.address!r})"

    # -- session ------------------------------------------------------------------------------------
    def open(self) -> "EVSimulator":
        with self._lock:
            if self._bus is not None:
                return self
            kwargs = dict(self.bus_kwargs)
            if self.interface not in _NO_BITRATE:
                kwargs.setdefault("bitrate", self.bitrate)
            try:
                if self.interface == "socketcand":
                    # python-can retries a refused socketcand connection for 10 s; fail fast and clearly.
                    socket.create_connection((kwargs["host"], int(kwargs["port"])), timeout=2.0).close()
                self._bus = can.Bus(interface=self.interface, channel=self.channel, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every interface raises its own kind
                raise InstrumentUnreachable(self.name, self.address, f"cannot open the CAN interface: {exc}") from exc
            self._notifier = can.Notifier(self._bus, [self._on_frame], timeout=0.1)
        return self

    def close(self) -> None:
        with self._lock:
            if self._notifier is not None:
                self._notifier.stop()
                self._notifier = None
            if self._bus is not None:
                self._bus.shutdown()
                self._bus = None

    def __enter__(self) -> "EVSimulator":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_frame(self, msg: can.Message) -> None:
        if msg.is_error_frame or msg.is_extended_id:
            return
        self.trace.append(msg)
        can_id = msg.arbitration_id
        now = time.monotonic()
        try:
            decoded = self.db.decode_message(can_id, msg.data, decode_choices=False) if can_id in self._known else None
        except (ValueError, KeyError) as exc:
            log.warning("%s: malformed 0x%X %s: %s", self.name, can_id, msg.data.hex(), exc)
            decoded = None
        with self._seen:
            self._stamps.setdefault(can_id, deque(maxlen=200)).append(now)
            if decoded is not None:
                self._latest[can_id] = decoded  # type: ignore[assignment]
                if can_id == SIM_STATUS:
                    self._replies[int(decoded["Sequence"])] = SimulatorStatus(
                        SimState(int(decoded["State"])), float(decoded["StateOfCharge"]),
                        float(decoded["BatteryCurrent"]), bool(decoded["ContactorClosed"]), bool(decoded["PluggedIn"]),
                    )
            self._seen.notify_all()

    @property
    def _known(self) -> set[int]:
        return {m.frame_id for m in self.db.messages}

    # -- observing ----------------------------------------------------------------------------------
    def identify(self, timeout: float = 2.0) -> EVIdentity:
        """Listen for ``timeout`` seconds; report the rate of every frame heard. Raises if the EV is silent."""
        self._require()
        start = time.monotonic()
        time.sleep(timeout)
        with self._seen:
            rates = {i: sum(1 for t in s if t >= start) / timeout for i, s in self._stamps.items()}
            rates = {i: hz for i, hz in rates.items() if hz > 0}
            request = self._latest.get(EV_REQUEST)
        if not any(i in rates for i in (EV_LIMITS, EV_TIMES, EV_REQUEST)):
            heard = ", ".join(f"0x{i:X}" for i in sorted(rates)) or "nothing"
            raise InstrumentUnreachable(self.name, self.address, f"no EV frame (0x100-0x102) in {timeout:g} s; heard {heard}")
        return EVIdentity(
            rates, int(request["ProtocolNumber"]) if request else None, float(request["StateOfCharge"]) if request else None
        )

    def ev_silence_s(self) -> float:
        """Wall-clock seconds since the EV last sent any of its frames (0x100-0x102); infinite if never.
        CHAdeMO chargers stop once this passes ``SILENCE_TIMEOUT_S``."""
        with self._seen:
            last = max((s[-1] for i, s in self._stamps.items() if i in (EV_LIMITS, EV_TIMES, EV_REQUEST) and s),
                       default=None)
        return float("inf") if last is None else time.monotonic() - last

    def ev_status(self, timeout: float = 1.0) -> EVStatus:
        """The EV's latest request, limits and flags (waits up to ``timeout`` s for a first 0x102)."""
        frames = self._wait_frames((EV_REQUEST, EV_LIMITS, EV_TIMES), timeout)
        r, lim, times = frames[EV_REQUEST], frames[EV_LIMITS], frames[EV_TIMES]
        return EVStatus(
            target_voltage=float(r["TargetBatteryVoltage"]), current_request=float(r["ChargingCurrentRequest"]),
            soc=float(r["StateOfCharge"]), max_voltage=float(lim["MaximumBatteryVoltage"]),
            capacity_kwh=float(times["RatedBatteryCapacity"]),
            faults=frozenset(name for name, signal in FAULT_SIGNALS.items() if r[signal]),
            charging_enabled=bool(r["StatusChargingEnabled"]), contactor_open=bool(r["StatusContactorOpen"]),
            stop_request=bool(r["StatusNormalStopRequest"]),
        )

    def charger_status(self, timeout: float = 1.0) -> ChargerStatus:
        """The charger's latest capability and status (waits up to ``timeout`` s for them)."""
        frames = self._wait_frames((CHARGER_CAPABILITY, CHARGER_STATUS), timeout)
        c, s = frames[CHARGER_CAPABILITY], frames[CHARGER_STATUS]
        return ChargerStatus(
            available_voltage=float(c["AvailableOutputVoltage"]), available_current=float(c["AvailableOutputCurrent"]),
            present_voltage=float(s["PresentOutputVoltage"]), present_current=float(s["PresentOutputCurrent"]),
            charging=bool(s["StatusCharging"]), malfunction=bool(s["StatusMalfunction"]),
            energised=bool(s["StatusEnergised"]), battery_incompatible=bool(s["StatusBatteryIncompatible"]),
            system_malfunction=bool(s["StatusSystemMalfunction"]), stop_control=bool(s["StatusStopControl"]),
        )

    def _wait_frames(self, ids: tuple[int, ...], timeout: float) -> dict[int, dict[str, float]]:
        self._require()
        deadline = time.monotonic() + timeout
        with self._seen:
            while not all(i in self._latest for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = ", ".join(f"0x{i:X}" for i in ids if i not in self._latest)
                    raise InstrumentUnreachable(self.name, self.address, f"no {missing} within {timeout:g} s")
                self._seen.wait(left)
            return {i: dict(self._latest[i]) for i in ids}

    def wait_for(self, predicate: Callable[[SimulatorStatus], bool], timeout: float, what: str = "condition") -> SimulatorStatus:
        """Ping until ``predicate(status)`` holds; raise ``InstrumentProtocolError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.ping()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise InstrumentProtocolError(self.name, self.address, f"{what} not reached in {timeout:g} s: {status}")
            time.sleep(0.05)

    # -- control ------------------------------------------------------------------------------------
    def command(self, cmd: SimCommand, *, soc: int = 255, current_cap: int = 255, faults: int = 0, silence: int = 0) -> SimulatorStatus:
        """Send one ``EVSIM_Control`` and wait for the ``EVSIM_Status`` echoing its sequence number."""
        with self._lock:
            bus = self._require()
            self._sequence = (self._sequence + 1) % 256
            seq = self._sequence
            data = self.db.encode_message(SIM_CONTROL, {
                "Sequence": seq, "Command": int(cmd), "StateOfCharge": soc, "CurrentCap": current_cap,
                "Faults": faults, "SilenceMask": silence,
            })
            msg = can.Message(arbitration_id=SIM_CONTROL, data=data, is_extended_id=False, timestamp=time.time())
            with self._seen:
                self._replies.pop(seq, None)
            try:
                bus.send(msg)
            except can.CanError as exc:
                raise InstrumentUnreachable(self.name, self.address, f"cannot send {cmd.name}: {exc}") from exc
            self.trace.append(msg)
            deadline = time.monotonic() + self.reply_timeout
            with self._seen:
                while seq not in self._replies:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise InstrumentProtocolError(
                            self.name, self.address, f"no EVSIM_Status for {cmd.name} (sequence {seq}) within {self.reply_timeout:g} s"
                        )
                    self._seen.wait(left)
                return self._replies.pop(seq)

    def ping(self) -> SimulatorStatus:
        """A round trip that changes nothing: the simulator's state now."""
        return self.command(SimCommand.PING)

    def plug_in(self) -> SimulatorStatus:
        return self.command(SimCommand.PLUG_IN)

    def unplug(self) -> SimulatorStatus:
        return self.command(SimCommand.UNPLUG)

    def start(self) -> SimulatorStatus:
        """Ask to charge: the EV closes its contactor once the charger's output is energised."""
        return self.command(SimCommand.START)

    def stop(self) -> SimulatorStatus:
        """Normal stop request: the EV opens its contactor once the current has dropped."""
        return self.command(SimCommand.STOP)

    def configure(self, *, soc: float | None = None, current_cap: float | None = None,
                  faults: set[str] | frozenset[str] = frozenset(), silence: set[int] | frozenset[int] = frozenset()) -> SimulatorStatus:
        """Set the battery SoC [%], cap the current request [A], raise fault flags, silence EV frames.

        ``faults`` from ``overvoltage``, ``undervoltage``, ``current_deviation``, ``high_temperature``,
        ``voltage_deviation``; ``silence`` from 0x100, 0x101, 0x102. Each call sets all of them.
        """
        unknown = set(faults) - set(FAULT_SIGNALS)
        if unknown:
            raise ValueError(f"unknown EV fault(s) {sorted(unknown)}; known: {', '.join(FAULT_SIGNALS)}")
        bad_ids = set(silence) - set(SILENCE_BITS)
        if bad_ids:
            raise ValueError(f"only 0x100, 0x101 and 0x102 can be silenced, not {sorted(hex(i) for i in bad_ids)}")
        if soc is not None and not 0 <= soc <= 100:
            raise ValueError(f"SoC {soc} % is outside 0..100")
        if current_cap is not None and not 0 <= current_cap <= 254:
            raise ValueError(f"current cap {current_cap} A is outside 0..254 (CHAdeMO's request is one byte)")
        fault_bits = sum(1 << k for k, name in enumerate(FAULT_SIGNALS) if name in faults)
        silence_bits = sum(bit for can_id, bit in SILENCE_BITS.items() if can_id in silence)
        return self.command(
            SimCommand.SET, soc=255 if soc is None else round(soc), current_cap=255 if current_cap is None else round(current_cap),
            faults=fault_bits, silence=silence_bits,
        )

    def _require(self) -> can.BusABC:
        if self._bus is None:
            raise InstrumentUnreachable(self.name, self.address, "not open: call open() first")
        return self._bus

    # -- asyncio side -------------------------------------------------------------------------------
    async def aidentify(self, timeout: float = 2.0) -> EVIdentity:
        return await asyncio.to_thread(self.identify, timeout)

    async def aev_status(self, timeout: float = 1.0) -> EVStatus:
        return await asyncio.to_thread(self.ev_status, timeout)

    async def acharger_status(self, timeout: float = 1.0) -> ChargerStatus:
        return await asyncio.to_thread(self.charger_status, timeout)

    async def acommand(self, cmd: SimCommand, **fields: int) -> SimulatorStatus:
        return await asyncio.to_thread(lambda: self.command(cmd, **fields))
