"""An emulated CHAdeMO EV on a CAN bus, coupled to the battery at one port of the plant.

Every 100 ms it sends 0x100, 0x101 and 0x102 from the plant battery (maximum voltage, capacity, target
voltage, current request, SoC, fault and status flags). It follows the charger's 0x108/0x109: after
``start`` it closes its contactor once the charger reports its output energised, and it stops (normal stop
request, contactor open) on a stop command, a full battery, a charger stop or malfunction, or a charger
silent for more than a second. It obeys evhil's ``EVSIM_Control`` (0x6F0) and answers with
``EVSIM_Status`` (0x6F1), so a bench driver controls it like an EV simulator.
"""

from __future__ import annotations

import logging
import threading
import time

import can

from hil.emulators.faults import Faults
from hil.instruments.chademo import (
    CHARGER_STATUS, EV_LIMITS, EV_REQUEST, EV_TIMES, FAULT_SIGNALS, PERIOD_S, SILENCE_BITS, SILENCE_TIMEOUT_S,
    SIM_CONTROL, SIM_STATUS, SimCommand, SimState, load_dbc,
)
from hil.plant import EV, Plant

log = logging.getLogger(__name__)

PROTOCOL_NUMBER = 2
STOP_CURRENT_A = 5.0
"""The EV opens its contactor once the charger's current is at or below this [A] (or after a second)."""


class EmulatedEV:
    """The EV side of one CHAdeMO link. ``start()`` / ``stop()`` run and end its threads."""

    def __init__(self, plant: Plant, port: str, bus: can.BusABC, *, period: float = PERIOD_S, latency: float = 0.0) -> None:
        self.plant = plant
        self.port = port
        self.bus = bus
        self.period = period
        self.latency = latency
        """Delay before the simulator answers a control command [s] (plus ``faults.latency``)."""
        self.faults = Faults()
        self.db = load_dbc()
        self.state = SimState.PLUGGED if self._ev().plugged_in else SimState.UNPLUGGED
        self.fault_flags: set[str] = set()
        self.current_cap = 255.0
        self._lock = threading.RLock()
        self._stop_since: float | None = None
        self._charger: dict[str, float] = {}
        self._charger_seen = 0.0
        self._frozen_soc: float | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._notifier: can.Notifier | None = None

    def _ev(self) -> EV:
        ev = self.plant.port(self.port).ev
        if ev is None:
            raise LookupError(f"port {self.port!r} has no EV")
        return ev

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._halt.clear()
        self._notifier = can.Notifier(self.bus, [self._on_frame], timeout=0.1)
        self._thread = threading.Thread(target=self._cycle, name=f"ev-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._notifier is not None:
            self._notifier.stop()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    # -- behaviour ----------------------------------------------------------------------------------
    def command(self, cmd: SimCommand, soc: int = 255, current_cap: int = 255, faults: int = 0, silence: int = 0) -> None:
        """Apply one control command (the same as arrives in ``EVSIM_Control``)."""
        with self._lock, self.plant.lock:
            ev = self._ev()
            if cmd is SimCommand.PLUG_IN:
                ev.plugged_in = True
                if self.state is SimState.UNPLUGGED:
                    self.state = SimState.PLUGGED
            elif cmd is SimCommand.UNPLUG:
                ev.plugged_in = False
                ev.contactor_closed = False
                self.state = SimState.UNPLUGGED
            elif cmd is SimCommand.START:
                if ev.plugged_in and self.state in (SimState.PLUGGED, SimState.STOPPED, SimState.FAULT):
                    self.state = SimState.WAITING
                    self._charger_seen = time.monotonic()
            elif cmd is SimCommand.STOP:
                self._begin_stop("stop command")
            elif cmd is SimCommand.SET:
                if soc != 255:
                    ev.battery.soc = min(max(soc / 100.0, 0.0), 1.0)
                self.current_cap = float(current_cap)
                self.fault_flags = {name for k, name in enumerate(FAULT_SIGNALS) if faults >> k & 1}
                silenced = {can_id for can_id, bit in SILENCE_BITS.items() if silence & bit}
                self.faults.silent_ids = silenced or None

    def _begin_stop(self, why: str) -> None:
        if self.state in (SimState.WAITING, SimState.CHARGING):
            log.info("EV at %s stops: %s", self.port, why)
            self.state = SimState.STOPPING
            self._stop_since = time.monotonic()

    def _on_frame(self, msg: can.Message) -> None:
        if msg.is_error_frame:
            return
        try:
            if msg.arbitration_id == CHARGER_STATUS:
                with self._lock:
                    self._charger = self.db.decode_message(msg.arbitration_id, msg.data, decode_choices=False)  # type: ignore[assignment]
                    self._charger_seen = time.monotonic()
            elif msg.arbitration_id == SIM_CONTROL:
                fields = self.db.decode_message(msg.arbitration_id, msg.data, decode_choices=False)
                self.command(SimCommand(int(fields["Command"])), int(fields["StateOfCharge"]), int(fields["CurrentCap"]),
                             int(fields["Faults"]), int(fields["SilenceMask"]))
                if self.faults.no_reply:
                    return
                delay = self.latency + self.faults.latency + self.faults.late_reply
                if delay > 0:
                    time.sleep(delay)
                self._send(SIM_STATUS, self._status(int(fields["Sequence"])))
        except (ValueError, KeyError) as exc:
            log.warning("EV at %s: ignoring malformed frame %s: %s", self.port, msg, exc)

    def _cycle(self) -> None:
        next_at = time.monotonic()
        delay = 0.0
        while not self._halt.wait(delay):
            try:
                self._step()
                for can_id in (EV_LIMITS, EV_TIMES, EV_REQUEST):
                    if self.state is not SimState.UNPLUGGED and not self.faults.silenced(can_id):
                        self._send(can_id, self._frame(can_id))
            except Exception:  # noqa: BLE001 - the EV must keep cycling
                log.exception("EV at %s: cycle failed", self.port)
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay < -self.period:  # fell behind (a stalled machine): do not burst to catch up
                next_at, delay = time.monotonic(), 0.0
            delay = max(delay, 0.0)

    def _step(self) -> None:
        """Advance the charging sequence from what the charger reports."""
        now = time.monotonic()
        with self._lock, self.plant.lock:
            ev = self._ev()
            charger = self._charger
            energised = bool(charger.get("StatusEnergised")) or charger.get("PresentOutputVoltage", 0) > 10
            stop_control = bool(charger.get("StatusStopControl"))
            malfunction = bool(charger.get("StatusMalfunction") or charger.get("StatusSystemMalfunction"))
            if self.state is SimState.WAITING and energised and not malfunction:
                ev.contactor_closed = True
                self.state = SimState.CHARGING
            elif self.state is SimState.CHARGING:
                if ev.battery.soc >= 0.999:
                    self._begin_stop("battery full")
                elif malfunction or stop_control:
                    self._begin_stop("charger stop or malfunction")
                elif now - self._charger_seen > SILENCE_TIMEOUT_S:
                    self._begin_stop(f"charger silent for {now - self._charger_seen:.1f} s")
            if self.state is SimState.STOPPING:
                current = self.plant.port(self.port).stage.current
                if current <= STOP_CURRENT_A or now - (self._stop_since or now) > 1.0:
                    ev.contactor_closed = False
                    self.state = SimState.STOPPED
            if self.fault_flags and self.state in (SimState.WAITING, SimState.CHARGING):
                self._begin_stop(f"EV fault {sorted(self.fault_flags)}")

    def _soc(self) -> float:
        soc = self._ev().battery.soc * 100.0
        if self.faults.frozen:
            if self._frozen_soc is None:
                self._frozen_soc = soc
            return self._frozen_soc
        self._frozen_soc = None
        return soc

    def _frame(self, can_id: int) -> bytes:
        with self._lock, self.plant.lock:
            b = self._ev().battery
            if can_id == EV_LIMITS:
                values = {"MinimumChargeCurrent": 0, "MinimumBatteryVoltage": round(b.empty_voltage * 0.9),
                          "MaximumBatteryVoltage": round(b.max_voltage), "ChargedRateReference": 100}
            elif can_id == EV_TIMES:
                values = {"MaxChargingTime10s": 2550, "MaxChargingTimeMin": 90, "EstimatedChargingTime": 60,
                          "RatedBatteryCapacity": round(b.capacity_kwh, 1)}
            else:
                charging = self.state in (SimState.WAITING, SimState.CHARGING)
                request = min(b.current_request(), self.current_cap, 255.0) if self.state is SimState.CHARGING else 0.0
                values = {
                    "ProtocolNumber": PROTOCOL_NUMBER, "TargetBatteryVoltage": round(b.max_voltage),
                    "ChargingCurrentRequest": int(request),
                    **{signal: int(name in self.fault_flags) for name, signal in FAULT_SIGNALS.items()},
                    "StatusChargingEnabled": int(charging), "StatusShifterNotPark": 0,
                    "StatusSystemFault": int(bool(self.fault_flags)),
                    "StatusContactorOpen": int(not self._ev().contactor_closed),
                    "StatusNormalStopRequest": int(self.state in (SimState.STOPPING, SimState.STOPPED)),
                    "StatusReserved5": 0, "StatusReserved6": 0, "StatusDischargeCompatible": 0,
                    "StateOfCharge": int(min(max(round(self._soc()), 0), 100)),
                }
        return self.db.encode_message(can_id, values)

    def _status(self, sequence: int) -> bytes:
        with self._lock, self.plant.lock:
            ev = self._ev()
            current = self.plant.port(self.port).stage.current if ev.contactor_closed else 0.0
            values = {"Sequence": sequence, "State": int(self.state), "StateOfCharge": round(self._soc(), 1),
                      "BatteryCurrent": round(max(min(current, 3276.7), -3276.8), 1),
                      "ContactorClosed": int(ev.contactor_closed), "PluggedIn": int(ev.plugged_in)}
        return self.db.encode_message(SIM_STATUS, values)

    def _send(self, can_id: int, data: bytes) -> None:
        try:
            self.bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))
        except can.CanError as exc:
            log.warning("EV at %s: send 0x%X failed: %s", self.port, can_id, exc)
