"""The charger's CAN side of one CHAdeMO port, reporting the plant's power stage.

Every 100 ms it sends 0x108 (available voltage and current from the stage's rating) and 0x109 (present
output voltage and current, status flags). It does not switch the stage: a test or a charger controller
does that over SCPI. It flags what a charger must: battery incompatibility when the EV's target voltage
exceeds what it can deliver, stop control while the output is off, a malfunction while a protection is
latched, and a system malfunction when the EV has been silent for over a second with the output on.
"""

from __future__ import annotations

import logging
import threading
import time

import can

from hil.emulators.faults import Faults
from hil.instruments.chademo import (
    CHARGER_CAPABILITY, CHARGER_STATUS, EV_REQUEST, PERIOD_S, SILENCE_TIMEOUT_S, load_dbc,
)
from hil.plant import Plant

log = logging.getLogger(__name__)


class EmulatedChargerECU:
    """Sends 0x108/0x109 for the stage at ``port``; ``start()`` / ``stop()`` run and end its threads."""

    def __init__(self, plant: Plant, port: str, bus: can.BusABC, *, period: float = PERIOD_S) -> None:
        self.plant = plant
        self.port = port
        self.bus = bus
        self.period = period
        self.faults = Faults()
        self.db = load_dbc()
        self.ev_silent = False
        """True while the EV has been silent for more than the timeout with the output on."""
        self._lock = threading.Lock()
        self._ev_request: dict[str, float] = {}
        self._ev_seen = time.monotonic()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._notifier: can.Notifier | None = None

    def start(self) -> None:
        self._halt.clear()
        self._ev_seen = time.monotonic()
        self._notifier = can.Notifier(self.bus, [self._on_frame], timeout=0.1)
        self._thread = threading.Thread(target=self._cycle, name=f"charger-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._notifier is not None:
            self._notifier.stop()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _on_frame(self, msg: can.Message) -> None:
        if msg.arbitration_id != EV_REQUEST or msg.is_error_frame:
            return
        try:
            decoded = self.db.decode_message(EV_REQUEST, msg.data, decode_choices=False)
        except ValueError as exc:
            log.warning("charger at %s: malformed 0x102 %s: %s", self.port, msg.data.hex(), exc)
            return
        with self._lock:
            self._ev_request = decoded  # type: ignore[assignment]
            self._ev_seen = time.monotonic()

    def _cycle(self) -> None:
        next_at = time.monotonic()
        delay = 0.0
        while not self._halt.wait(delay):
            try:
                for can_id, data in self._frames():
                    if not self.faults.silenced(can_id):
                        self.bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))
            except Exception:  # noqa: BLE001 - keep cycling
                log.exception("charger at %s: cycle failed", self.port)
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay < -self.period:
                next_at, delay = time.monotonic(), 0.0
            delay = max(delay, 0.0)

    def _frames(self) -> list[tuple[int, bytes]]:
        with self.plant.lock:
            stage = self.plant.port(self.port).stage
            rated_v, rated_i = stage.rated_voltage, stage.rated_current
            volts, amps, on, tripped = stage.voltage, stage.current, stage.output_on, bool(stage.tripped)
        with self._lock:
            target = self._ev_request.get("TargetBatteryVoltage", 0)
            silent = time.monotonic() - self._ev_seen > SILENCE_TIMEOUT_S
        available_v = min(round(rated_v), 0xFFFF)
        if silent and on and not self.ev_silent:
            log.warning("charger at %s: EV silent for more than %.1f s with the output on", self.port, SILENCE_TIMEOUT_S)
        self.ev_silent = silent and on
        capability = {"WeldingDetection": 1, "AvailableOutputVoltage": available_v,
                      "AvailableOutputCurrent": min(round(rated_i), 255), "ThresholdVoltage": min(round(target or rated_v), 0xFFFF)}
        status = {
            "ProtocolNumber": 2, "PresentOutputVoltage": min(max(round(volts), 0), 0xFFFF),
            "PresentOutputCurrent": min(max(round(amps), 0), 255), "DischargeCompatible": 0,
            "StatusCharging": int((on and not tripped) or amps > 5.0), "StatusMalfunction": int(tripped),
            "StatusEnergised": int(volts > 10.0), "StatusBatteryIncompatible": int(target > available_v),
            "StatusSystemMalfunction": int(self.ev_silent), "StatusStopControl": int(not on or self.ev_silent),
            "RemainingTime10s": 0, "RemainingTimeMin": 60,
        }
        return [(CHARGER_CAPABILITY, self.db.encode_message(CHARGER_CAPABILITY, capability)),
                (CHARGER_STATUS, self.db.encode_message(CHARGER_STATUS, status))]
