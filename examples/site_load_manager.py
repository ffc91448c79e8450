#!/usr/bin/env python3
"""An example site load manager: the kind of product evhil puts in the loop as a site under test.

It runs in its own process and imports nothing from evhil, only public libraries: the ``ocpp`` package (an
OCPP 1.6J central system for the site's chargers) and pymodbus (the site meter). A vendor copies the
recipe: this file and ``rigs/site-under-test.yaml``. What it does:

- accepts OCPP 1.6J charge points on ``ws://HOST:PORT/<id>``, authorises every idTag, follows their
  transactions and their MeterValues (``Current.Import``); at boot it installs a TxDefaultProfile of 0 A, so
  a new transaction waits for its share;
- reads the site meter, an Eastron SDM630 over Modbus TCP (phase currents and the import energy counter:
  float32 input registers 0x0006, 0x0008, 0x000A and 0x0048, high word first), once a second;
- once a second and at every transaction start or stop, shares the site limit (less a 5 % margin and the
  building's own load: the site meter less what the chargers report, the highest of the last 5 s) equally
  between the running transactions, at most ``--rating-a`` each; an EV that draws more than 2 A above its
  share for 10 s is budgeted at what it draws and the others share the rest. IEC 61851-1 allows a set point of 0 or at
  least 6 A, so when the share would fall below 6 A the latest transactions pause. Each share goes out as a
  TxProfile (a relative schedule of one period) when it changed by 0.5 A or more;
- falls back to the declared worst-case building load (``--worst-building-a``) when the meter has not
  answered for 3 s, has not changed for 3 s while the chargers draw (frozen), or has read less than the
  chargers report for 3 s (implausible), and leaves the fallback after 60 s of healthy readings;
- takes the site limit on its API, ``POST /set_site_limit`` with ``{"limit_a": 48, "delay_s": 0}`` (a limit
  announced ``delay_s`` ahead is applied 3 s before it starts); ``GET /`` shows its state. Answers are
  ``{"result": ...}`` or ``{"error": ...}``, the service-port form ``hil do`` speaks.

``--defect late-decrease`` switches on a deliberate defect: a lower site limit is applied 30 s late.
``--time-scale S`` runs its own time S times faster than the wall clock (a simulation build, for a test
rig whose clock runs as fast: its periods, timeouts and the limits' delays are in that time).

Run: ``python3 examples/site_load_manager.py --ocpp-port 9310 --meter 127.0.0.1:15020 --api-port 9311``.
Units: A per phase, s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, RegistrationStatus
from pymodbus.client import AsyncModbusTcpClient

log = logging.getLogger("load-manager")

PERIOD_S = 1.0
MARGIN = 0.05
"""Kept below the limit: meters, rounding and a charger's tolerance."""
MIN_A = 6.0
"""IEC 61851-1: a set point is 0 or at least 6 A."""
RESEND_A = 0.5
STALE_S = 3.0
HEALTHY_S = 60.0
HOLD_S = 5.0
"""The building load estimate is the highest of this long: it may fall slowly, never rise late."""
LEAD_S = 3.0
"""An announced limit is applied this long before it starts."""
OVER_A, OVER_S = 2.0, 10.0
"""An EV more than OVER_A above its share for OVER_S does not follow it."""
LATE_S = 30.0
"""The deliberate defect: how late a lower limit is applied."""
CALL_TIMEOUT_S = 5.0
CURRENT_L1 = 0x0006
"""SDM630 input registers (float32, high word first): phase currents at 0x0006, 0x0008, 0x000A [A]..."""
ENERGY = 0x0048
"""... and the import energy counter [kWh]: the meter is fresh while either changes."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Transaction:
    station: "Station"
    connector: int
    transaction_id: int
    started: float
    current_a: float = 0.0
    """The highest Current.Import the charger last reported [A]."""
    sent_a: float | None = None
    """The share last accepted by the charger [A]."""
    over_since: float | None = None
    """Since when the EV has drawn more than its share (the manager's time) [s]."""


class Station(OcppChargePoint):
    """One charge point, as the load manager sees it."""

    def __init__(self, cp_id: str, connection: Any, manager: "LoadManager") -> None:
        super().__init__(cp_id, connection, response_timeout=CALL_TIMEOUT_S)
        self.manager = manager

    @on(Action.boot_notification)
    async def on_boot(self, **_: Any) -> call_result.BootNotification:
        asyncio.get_running_loop().create_task(self.manager.installed(self))  # never await a call in a handler
        return call_result.BootNotification(current_time=now_iso(), interval=60, status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    async def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.status_notification)
    async def on_status(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action.start_transaction)
    async def on_start(self, connector_id: int, id_tag: str, **_: Any) -> call_result.StartTransaction:
        tx = self.manager.start(self, connector_id)
        return call_result.StartTransaction(transaction_id=tx.transaction_id, id_tag_info={"status": "Accepted"})

    @on(Action.stop_transaction)
    async def on_stop(self, transaction_id: int, **_: Any) -> call_result.StopTransaction:
        self.manager.stop(transaction_id)
        return call_result.StopTransaction()

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]], **_: Any) -> call_result.MeterValues:
        currents = [float(sv["value"]) for mv in meter_value[-1:] for sv in mv.get("sampled_value", [])
                    if sv.get("measurand") == "Current.Import"]
        if currents:
            self.manager.metered(self, connector_id, max(currents))
        return call_result.MeterValues()


@dataclass
class LoadManager:
    limit_a: float
    rating_a: float
    worst_building_a: float
    meter_host: str
    meter_port: int
    meter_unit: int
    defect: str | None = None
    transactions: dict[int, Transaction] = field(default_factory=dict)
    announced: list[tuple[float, float]] = field(default_factory=list)
    """(the manager's time it starts, limit) of limits told ahead."""
    time_scale: float = 1.0
    site_a: tuple[float, float, float] | None = None
    energy_kwh: float | None = None
    changed_at: float = 0.0
    read_at: float = 0.0
    plausible_at: float = 0.0
    fallback_since: float | None = None
    healthy_since: float | None = None
    building: list[tuple[float, float]] = field(default_factory=list)
    next_id: int = 1
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        """The manager's own time [s]: the wall clock, ``time_scale`` times faster."""
        return time.monotonic() * self.time_scale

    # -- what the chargers tell --------------------------------------------------------------------
    async def installed(self, station: Station) -> None:
        """At boot: new transactions wait at 0 A until their first share."""
        profile = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                   "chargingProfileKind": "Relative",
                   "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0.0}]}}
        try:
            await station.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))
        except Exception as exc:  # noqa: BLE001 - a charger that refuses is logged, the site runs on
            log.warning("%s: TxDefaultProfile not installed: %s", station.id, exc)

    def start(self, station: Station, connector: int) -> Transaction:
        tx = Transaction(station, connector, self.next_id, self.now())
        self.next_id += 1
        self.transactions[tx.transaction_id] = tx
        log.info("%s/%d: transaction %d started", station.id, connector, tx.transaction_id)
        self.wake.set()
        return tx

    def stop(self, transaction_id: int) -> None:
        if self.transactions.pop(transaction_id, None) is not None:
            log.info("transaction %d stopped", transaction_id)
            self.wake.set()

    def metered(self, station: Station, connector: int, current_a: float) -> None:
        for tx in self.transactions.values():
            if tx.station is station and tx.connector == connector:
                tx.current_a = current_a
                over = tx.sent_a is not None and current_a > tx.sent_a + OVER_A
                tx.over_since = (tx.over_since or self.now()) if over else None

    # -- what the API tells ------------------------------------------------------------------------
    def set_site_limit(self, limit_a: float, delay_s: float = 0.0) -> dict[str, Any]:
        if limit_a <= 0:
            raise ValueError(f"limit_a must be above 0, got {limit_a}")
        late = self.defect == "late-decrease" and limit_a < self.limit_a
        starts = self.now() + max(float(delay_s), 0.0) + (LATE_S if late else 0.0)
        self.announced.append((starts, float(limit_a)))
        log.info("site limit %.1f A from %.1f s from now", limit_a, starts - self.now())
        self.wake.set()
        return {"limit_a": limit_a, "in_s": round(starts - self.now(), 3)}

    def state(self) -> dict[str, Any]:
        return {"limit_a": self.limit_a, "site_a": self.site_a, "fallback": self.fallback_since is not None,
                "transactions": {tx.transaction_id: {"charge_point": tx.station.id, "connector": tx.connector,
                                                     "current_a": tx.current_a, "share_a": tx.sent_a}
                                 for tx in self.transactions.values()}}

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        # a reply takes wall-clock time whatever the manager's own time: at most 0.8 s, less when it runs faster
        meter = AsyncModbusTcpClient(self.meter_host, port=self.meter_port, timeout=max(0.25, 0.8 / self.time_scale),
                                     retries=0)
        self.changed_at = self.read_at = self.plausible_at = self.now()
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), PERIOD_S / self.time_scale)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            await self.read_meter(meter)
            await self.allocate()

    async def read_meter(self, meter: AsyncModbusTcpClient) -> None:
        try:
            if not meter.connected:
                await meter.connect()
            reply = await meter.read_input_registers(CURRENT_L1, count=ENERGY + 2 - CURRENT_L1, device_id=self.meter_unit)
            if reply.isError():
                raise IOError(f"Modbus exception {reply}")
        except Exception as exc:  # noqa: BLE001 - a meter that fails is stale; the fallback covers it
            log.debug("site meter: %s", exc)
            return
        regs = reply.registers

        def value(address: int) -> float:
            k = address - CURRENT_L1
            return float(struct.unpack(">f", struct.pack(">HH", regs[k], regs[k + 1]))[0])

        currents = (value(CURRENT_L1), value(CURRENT_L1 + 2), value(CURRENT_L1 + 4))
        energy = value(ENERGY)
        if (currents, energy) != (self.site_a, self.energy_kwh):  # a live meter's energy counter moves
            self.changed_at = self.now()
        self.site_a, self.energy_kwh, self.read_at = currents, energy, self.now()

    def building_a(self, now: float) -> float:
        """The building's own load on the worst phase [A], or the worst case in fallback."""
        if self.site_a is None:
            return self.worst_building_a  # no reading yet: not a fallback to leave, just nothing known
        ev_a = sum(tx.current_a for tx in self.transactions.values())
        # no answer for STALE_S, or the same values for that long while the chargers say they draw (frozen)
        stale = now - self.read_at > STALE_S or (ev_a > 1.0 and now - self.changed_at > STALE_S)
        # reading less than the chargers report, for longer than a meter lags a ramp
        if max(self.site_a) + 2.0 >= ev_a:
            self.plausible_at = now
        implausible = now - self.plausible_at > STALE_S
        if stale or implausible:
            if self.fallback_since is None:
                log.warning("site meter %s: fallback to %.1f A of building load", "stale" if stale else "implausible",
                            self.worst_building_a)
                self.fallback_since = now
            self.healthy_since = None
        elif self.fallback_since is not None:
            self.healthy_since = self.healthy_since or now
            if now - self.healthy_since >= HEALTHY_S:
                log.info("site meter healthy for %.0f s: fallback left", HEALTHY_S)
                self.fallback_since = None
        if self.fallback_since is not None:
            return self.worst_building_a
        self.building = [(t, a) for t, a in self.building if now - t <= HOLD_S] + [(now, max(max(self.site_a) - ev_a, 0.0))]
        return max(a for _, a in self.building)

    def limit_now(self, now: float) -> float:
        """The limit to keep now: the newest in force, or lower one starting within ``LEAD_S``."""
        due = [(t, a) for t, a in self.announced if t <= now]
        if due:
            self.limit_a = due[-1][1]
            self.announced = [(t, a) for t, a in self.announced if t > now]
        soon = [a for t, a in self.announced if t - now <= LEAD_S]
        return min([self.limit_a, *soon])

    async def allocate(self) -> None:
        now = self.now()
        budget = self.limit_now(now) * (1.0 - MARGIN) - self.building_a(now)
        # an EV that does not follow its share is budgeted at what it draws; the others share the rest
        ignoring = [tx for tx in self.transactions.values() if tx.over_since is not None and now - tx.over_since > OVER_S]
        budget -= sum(tx.current_a for tx in ignoring)
        running = sorted((tx for tx in self.transactions.values() if tx not in ignoring), key=lambda tx: tx.started)
        count = len(running)
        while count and budget / count < MIN_A:
            count -= 1
        share = min(budget / count, self.rating_a) if count else 0.0
        changes = [(tx, round(share if k < count else 0.0, 1)) for k, tx in enumerate(running)]
        changes = [(tx, a) for tx, a in changes if tx.sent_a is None or abs(a - tx.sent_a) >= RESEND_A]
        changes.sort(key=lambda c: c[1] - (c[0].sent_a or 0.0))  # decreases first
        await asyncio.gather(*(self.send(tx, a) for tx, a in changes))

    async def send(self, tx: Transaction, limit_a: float) -> None:
        profile = {"chargingProfileId": 100 + tx.connector, "stackLevel": 0, "transactionId": tx.transaction_id,
                   "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Relative",
                   "chargingSchedule": {"chargingRateUnit": "A",
                                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_a}]}}
        try:
            answer = await tx.station.call(call.SetChargingProfile(connector_id=tx.connector, cs_charging_profiles=profile))
        except Exception as exc:  # noqa: BLE001 - sent again at the next period
            log.warning("%s: SetChargingProfile %.1f A: %s", tx.station.id, limit_a, exc)
            return
        if answer.status == "Accepted":
            tx.sent_a = limit_a


async def serve_api(manager: LoadManager, host: str, port: int) -> asyncio.AbstractServer:
    """``POST /set_site_limit`` and ``GET /`` (one request per connection, JSON in and out)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, body = 200, {}
        try:
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)).decode("latin-1").split("\r\n")
            method, path = head[0].split()[:2]
            length = next((int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), 0)
            data = json.loads(await reader.readexactly(length) or b"{}") if length else {}
            if method == "GET" and path.strip("/") == "":
                body = {"result": manager.state()}
            elif method == "POST" and path.strip("/") == "set_site_limit":
                body = {"result": manager.set_site_limit(float(data["limit_a"]), float(data.get("delay_s", 0.0)))}
            else:
                status, body = 404, {"error": f"{method} {path}: known are POST /set_site_limit and GET /"}
        except (KeyError, TypeError, ValueError) as exc:
            status, body = 400, {"error": f"bad request: {exc}"}
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            status, body = 400, {"error": f"malformed request: {type(exc).__name__}"}
        payload = json.dumps(body).encode()
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + payload)
        try:
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def main(args: argparse.Namespace) -> None:
    host, _, port = args.meter.rpartition(":")
    manager = LoadManager(limit_a=args.limit_a, rating_a=args.rating_a, worst_building_a=args.worst_building_a,
                          meter_host=host, meter_port=int(port), meter_unit=args.unit, defect=args.defect,
                          time_scale=args.time_scale)

    async def on_connect(connection: Any) -> None:
        cp_id = connection.request.path.strip("/").split("/")[-1]
        if connection.subprotocol != "ocpp1.6" or not cp_id:
            await connection.close(1002, "OCPP 1.6J only, at ws://host:port/<id>")
            return
        log.info("%s connected", cp_id)
        try:
            await Station(cp_id, connection, manager).start()
        except websockets.ConnectionClosed:
            log.info("%s disconnected", cp_id)

    ocpp_server = await websockets.serve(on_connect, args.host, args.ocpp_port, subprotocols=["ocpp1.6"])
    api = await serve_api(manager, args.host, args.api_port)
    log.info("OCPP 1.6J on ws://%s:%d/<id>, API on http://%s:%d, site meter %s unit %d%s", args.host, args.ocpp_port,
             args.host, args.api_port, args.meter, args.unit, f", DEFECT {args.defect}" if args.defect else "")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    loop_task = asyncio.create_task(manager.run())
    await stop.wait()
    loop_task.cancel()
    ocpp_server.close()
    api.close()


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Example site load manager (OCPP 1.6J central system + SDM630 site meter)")
    p.add_argument("--host", default="127.0.0.1", help="where the OCPP server and the API listen")
    p.add_argument("--ocpp-port", type=int, default=9310)
    p.add_argument("--api-port", type=int, default=9311)
    p.add_argument("--meter", default="127.0.0.1:15020", help="the site meter (SDM630, Modbus TCP) as HOST:PORT")
    p.add_argument("--unit", type=int, default=1, help="the site meter's Modbus unit id")
    p.add_argument("--limit-a", type=float, default=80.0, help="site limit until the API sets one [A per phase]")
    p.add_argument("--rating-a", type=float, default=32.0, help="the chargers' rating [A per phase]")
    p.add_argument("--worst-building-a", type=float, default=30.0,
                   help="the building's declared worst-case load, assumed while the meter is not trusted [A]")
    p.add_argument("--defect", choices=["late-decrease"], default=None, help="switch on a deliberate defect")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="its own seconds per wall-clock second (a simulation build on a test rig's scaled clock)")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args()


if __name__ == "__main__":
    options = arguments()
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s", level=logging.INFO)
    log.setLevel(logging.DEBUG if options.verbose else logging.INFO)
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    asyncio.run(main(options))
