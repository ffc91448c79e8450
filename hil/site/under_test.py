"""A site whose load manager is the device under test, reached only over the wire.

The product (an energy manager box, a CSMS that balances a site, a charger that shares a feeder) is named
in the rig file as ``dut.kind: site_controller``. evhil plays the rest of the site on an emulated rig and
the run on it (``hil.site.rig_run``) is the same as for a reference controller:

- **the chargers**: one evhil charge point per port (OCPP 1.6 ``ChargePoint`` or 2.0.1 ``ChargingStation``,
  ids ``EVHIL-P1``, ``EVHIL-P2``...) connects to the product's ``dut.csms_url``. What its composite limit
  allows (the product's charging profiles) is the charger's command to its power stage: the port's power
  source, which the run drives over SCPI. The product sees the chargers' MeterValues, measured by the
  plant;
- **the site meter** the product reads: ``dut.site_meter``, emulated on 127.0.0.1 at the address the product
  was commissioned with, and faulted by the fault-recovery conditions (gain, frozen, silent);
- **the EVs** arrive over CAN (the charge point notices the cable) and present a token; they leave by
  unplugging; the building's unmanaged load and the reference meter the verdict is taken on stay evhil's;
- **the site limit** and its changes reach the product through the control seam
  (``SiteControl.set_site_limit``): at the start, at every change, and ahead of a demand-response event as
  long ahead as the event's notice.

``dut.launch`` starts the product for each run (its output goes to a log next to the traces) and stops it
after; without it the product runs by itself. ``SiteUnderTest`` is what the run calls its controller: its
``decide`` returns the limits the chargers enforce, so every load-limit and fault-recovery condition judges
the product exactly as it judges evhil's reference controllers, from the reference meter.

Units: A per phase, s of the rig's clock.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.control import SiteControl
from hil.controllers.observation import Decision, Observation
from hil.dut_process import DutProcess
from hil.emulators.loop import EmulatorLoop
from hil.ocpp.charge_point import ChargePoint
from hil.ocpp.charging_station import ChargingStation
from hil.ocpp.outlet import Outlet
from hil.ocpp.uplink import BackOff
from hil.rig.model import DutSpec
from hil.rig.rig import Rig
from hil.site.scenarios import Scenario
from hil.site.simulation import limit_trace

CHARGE_POINT_PREFIX = "EVHIL-P"
"""Charge point ``k`` (1-based port) connects as ``EVHIL-P<k>``."""
TOKEN = "EVHIL-SITE-0001"
"""The idTag every EV presents."""
CONNECT_TIMEOUT_S = 30.0
"""How long every charge point may take to be accepted by the product [wall s] (a launched product starts
in that time too)."""
GRID_S = 0.1
"""Resolution at which the scenario's limit changes are found [s]."""


class SiteUnderTestError(RuntimeError):
    """The product could not be put in the loop (not started, not reachable, the seam failed)."""


@dataclass
class ChargerOutlet(Outlet):
    """A connector whose power electronics are the port's power source, driven by the rig run: the limit the
    charge point enforces is kept as the charger's command (``commanded_a``), not written to the plant."""

    commanded_a: float = 0.0
    """What the charge point lets the EV draw now [A per phase]; 0 without a charging transaction."""

    def energize(self, limit_a: float | None) -> None:
        self.commanded_a = self.max_current if limit_a is None else max(0.0, min(limit_a, self.max_current))

    def de_energize(self) -> None:
        self.commanded_a = 0.0

    @property
    def energized(self) -> bool:
        return self.commanded_a > 0.0


@dataclass(frozen=True)
class LimitNotice:
    """Tell the product ``limit_a`` at ``tell_s``, in force from ``start_s`` [s of the run]."""

    tell_s: float
    start_s: float
    limit_a: float


def limit_notices(scenario: Scenario) -> list[LimitNotice]:
    """When the product is told which limit: the first at 0, then each change of the enforced limit when it
    happens, or ``notice`` seconds ahead for an announced demand-response event."""
    t = np.arange(0.0, scenario.duration + GRID_S, GRID_S)
    _, enforced, _, _ = limit_trace(scenario, t)
    notices = [LimitNotice(0.0, 0.0, float(enforced[0]))]
    for k in np.nonzero(np.diff(enforced))[0] + 1:
        start = float(t[k])
        ahead = max((e.notice for e in scenario.events
                     if e.kind == "demand_response" and abs(e.start - start) < GRID_S / 2), default=0.0)
        notices.append(LimitNotice(max(start - ahead, 0.0), start, float(enforced[k])))
    return sorted(notices, key=lambda n: n.tell_s)


class SiteUnderTest:
    """The product as the rig run's controller: ``start`` puts it in the loop, ``decide`` tells it what the
    scenario says and returns what its chargers enforce, ``close`` takes it out again."""

    def __init__(self, scenario: Scenario, rig: Rig, dut: DutSpec, control: SiteControl, *,
                 log_path: Path | None = None) -> None:
        if rig.plant is None:
            raise SiteUnderTestError("a site under test runs on an emulated rig (its chargers are ports of the plant)")
        if dut.csms_url is None or dut.ocpp_version is None:
            raise SiteUnderTestError("rig file: dut.csms_url and dut.ocpp_version name where the product's chargers "
                                     "connect and how")
        self.name = dut.name
        self.architecture = dut.architecture
        self.scenario, self.rig, self.dut, self.control = scenario, rig, dut, control
        self.log_path = log_path
        """Where a launched product's output goes (appended)."""
        wiring = {p.name: len(p.phases) for p in rig.spec.ports}
        self.outlets = [ChargerOutlet(rig.plant, name, max_current=scenario.evse_max_a, phases=wiring[name])
                        for name in list(rig.plant.ports)[: scenario.ports]]
        self.ids = [f"{CHARGE_POINT_PREFIX}{k + 1}" for k in range(scenario.ports)]
        self.notices = limit_notices(scenario)
        self.charge_points: list[ChargePoint | ChargingStation] = []
        self.process: DutProcess | None = None
        self._loop: EmulatorLoop | None = None
        self._presented = np.zeros(scenario.ports, dtype=bool)
        self._pending: list[tuple[str, Future[Any]]] = []

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> "SiteUnderTest":
        """Launch the product (``dut.launch``), connect the chargers and tell it the first limit; raises
        ``SiteUnderTestError`` naming what did not come up."""
        try:
            if self.dut.launch:
                self.process = DutProcess(self.dut.launch, self.log_path).start()
            self._loop = EmulatorLoop()
            self._loop.run(self._connect(), timeout=CONNECT_TIMEOUT_S + 5.0)
            first = self.notices.pop(0)
            self._loop.run(self._tell(first.limit_a, 0.0), timeout=self._seam_timeout())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Disconnect the chargers and stop a launched product (SIGTERM, then SIGKILL)."""
        if self._loop is not None:
            try:
                self._loop.run(self._disconnect(), timeout=10.0)
            except Exception:  # noqa: BLE001 - closing must go on
                pass
            self._loop.close()
            self._loop = None
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> "SiteUnderTest":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def traces(self) -> dict[str, str]:
        """Per charge point, its OCPP message trace (JSON lines)."""
        return {cp.id: cp.trace.jsonl() for cp in self.charge_points}

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the launched product wrote ('' when it was not launched or logs nowhere)."""
        return self.process.log_tail(lines) if self.process is not None else ""

    # -- the controller the run calls ---------------------------------------------------------------
    def decide(self, obs: Observation) -> Decision:
        """Tell the product the limits due by ``obs.time``, present a token for each EV that just arrived, and
        return what each charger enforces now [A per phase]."""
        assert self._loop is not None
        self._check_pending()
        while self.notices and self.notices[0].tell_s <= obs.time + 1e-9:
            n = self.notices.pop(0)
            self._submit(f"set_site_limit {n.limit_a:g} A", self._tell(n.limit_a, max(n.start_s - obs.time, 0.0)))
        for p in np.nonzero(obs.connected & ~self._presented)[0]:
            self._submit(f"present token at port {p + 1}", self.charge_points[p].present_token(TOKEN, 1))
        self._presented = obs.connected.copy()
        return Decision(np.array([o.commanded_a for o in self.outlets]))

    # -- on the loop --------------------------------------------------------------------------------
    async def _connect(self) -> None:
        assert self.dut.csms_url is not None
        url = self.dut.csms_url
        configure = {"MeterValueSampleInterval": "1",
                     "MeterValuesSampledData": "Current.Import,Energy.Active.Import.Register"}
        for cs_id, outlet in zip(self.ids, self.outlets):
            if self.dut.ocpp_version == "1.6":
                cp: ChargePoint | ChargingStation = ChargePoint(
                    cs_id, url, [outlet], password=self.dut.password, configure=configure,
                    backoff=BackOff(wait_minimum=0.2), clock=self.rig.clock)
            else:
                cp = ChargingStation(cs_id, url, [outlet], password=self.dut.password)
            self.charge_points.append(cp)
            await cp.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(cp.uplink.boot_accepted.wait() for cp in self.charge_points)),
                                   CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            waiting = [cp.id for cp in self.charge_points if not cp.uplink.boot_accepted.is_set()]
            died = ""
            if self.process is not None and self.process.exited is not None:
                died = f"; the product exited with status {self.process.exited}"
            tail = self.log_tail(5)
            raise SiteUnderTestError(
                f"site load manager under test at {url}: {', '.join(waiting)} not accepted within "
                f"{CONNECT_TIMEOUT_S:g} s{died}" + (f"; its log ends:\n{tail}" if tail else "")) from None

    async def _disconnect(self) -> None:
        await asyncio.gather(*(cp.stop() for cp in self.charge_points), return_exceptions=True)

    async def _tell(self, limit_a: float, delay_s: float) -> None:
        await self.control.set_site_limit(limit_a, delay_s)

    def _seam_timeout(self) -> float:
        return float(self.dut.control.timeout_s) + 5.0

    def _submit(self, what: str, coro: Any) -> None:
        assert self._loop is not None
        self._pending.append((what, asyncio.run_coroutine_threadsafe(coro, self._loop.loop)))

    def _check_pending(self) -> None:
        """Raise the first failure of what was handed to the product (the seam or a charge point)."""
        still: list[tuple[str, Future[Any]]] = []
        for what, future in self._pending:
            if not future.done():
                still.append((what, future))
            elif future.exception() is not None:
                raise SiteUnderTestError(f"{what}: {future.exception()}")
        self._pending = still
