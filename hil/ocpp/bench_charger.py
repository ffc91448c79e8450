"""evhil's charge point emulator as a charger on a bench: in its own process, reached by the suites only
through the ``command`` adapter, the way a real charger is.

``BenchCharger`` is the emulator of ``hil charge-point`` with the test mode a charger's service port offers
(``hil charge-point --control-port``): one action per control-seam action (``hil.control.ACTIONS``, each the
emulator's own method), ``factory_reset`` and ``status``. The supply actions act like a switched PDU:
``power_on`` on a charger that is on, or ``power_off`` on one that is off, changes nothing.

A charger in its own process outlives a test: it keeps its configuration, local list, cache, charging
profiles, network profiles, transactions, queued messages and connection, where the in-process fixture
builds a fresh emulator per test and starts it only when the test boots it (a case may script the
BootNotification answer first). ``factory_reset`` gives the suites the same start: the emulator goes down,
a new one with the factory settings takes its place, every cable is out, and it stays off until
``power_on``. The suites' fixture runs it before each test through the rig file's ``reset_to_defaults``
command and switches the charger on when the test boots it (``hil.ocpp.fixtures``).

``suite_rig`` is the rig file through which the suites reach such a charger: ``dut.kind: charger``, the
``command`` adapter calling ``hil do`` on the service port, and the meters of the charger's ports as Modbus
TCP meters served by the charger's process (the smart-charging cases read the current the connector
delivers, as they do in process). ``ChargerProcess`` starts ``hil charge-point`` as a child process on free
ports and has it write that rig file (CI, ``hil.ocpp.compare_runs``).

Times: seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hil.control import ACTIONS
from hil.ocpp.charge_point import ChargePoint
from hil.ocpp.charging_station import ChargingStation
from hil.ocpp.outlet import Outlet
from hil.ocpp.rpc import Frame
from hil.rig.model import RigSpec
from hil.rig.rig import Rig
from hil.service_port import Action, call

Emulator = ChargePoint | ChargingStation
RESET_COMMAND = "reset_to_defaults"
"""The rig file's command that brings a charger under test back to its factory state, switched off."""
_VALUES = {"present_token": "token={token} connector:={connector}",
           "raise_fault": "connector:={connector} error_code={error}",
           "cut_network": "", "restore_network": "", "power_off": "", "power_on": ""}
"""How each action's placeholders go into ``hil do`` (default: ``connector:={connector}``)."""


class BenchCharger:
    """The emulator ``make()`` builds, on ``outlets``, with a charger's test mode. ``on_frame`` sees every
    OCPP frame of every emulator it builds (the process's log)."""

    def __init__(self, make: Callable[[], Emulator], outlets: list[Outlet],
                 on_frame: Callable[[Frame], None] | None = None) -> None:
        self._make = make
        self.outlets = outlets
        self._on_frame = on_frame
        self._lock = asyncio.Lock()
        self.resets = 0
        """Factory resets so far."""
        self.emulator = self._build()

    def _build(self) -> Emulator:
        emulator = self._make()
        if self._on_frame is not None:
            emulator.trace.listen(self._on_frame)
        return emulator

    async def start(self) -> "BenchCharger":
        """Switch the charger on (it connects and boots)."""
        await self.power_on()
        return self

    async def stop(self) -> None:
        """Stop the emulator and de-energise its outlets."""
        async with self._lock:
            await self.emulator.stop()

    async def power_on(self) -> None:
        """The supply comes on: the charger boots (nothing happens when it is on)."""
        if not self.emulator.running:
            await self.emulator.power_on()

    async def power_off(self) -> None:
        """The supply goes off (nothing happens when it is off); see the emulator's ``power_off``."""
        if self.emulator.running:
            await self.emulator.power_off()

    async def factory_reset(self) -> None:
        """Back to the factory state, switched off: the emulator stops, every cable is taken out, and a new
        emulator with the factory settings waits for ``power_on``. Returns once the old one is down."""
        await self.emulator.stop()
        for outlet in self.outlets:
            outlet.plug(False)
            outlet.de_energize()
        self.emulator = self._build()
        self.resets += 1

    async def status(self) -> dict[str, Any]:
        """What a service technician reads off the charger: on or off, factory resets so far, boot status."""
        return {"id": self.emulator.id, "on": self.emulator.running, "resets": self.resets,
                "boot_status": self.emulator.boot_status}

    def actions(self) -> dict[str, Action]:
        """The service port's actions: the control seam's, ``factory_reset`` and ``status``; one at a time."""
        own = {"power_on": self.power_on, "power_off": self.power_off, "factory_reset": self.factory_reset,
               "status": self.status}
        return {name: self._serialised(name, own.get(name)) for name in (*ACTIONS, "factory_reset", "status")}

    def _serialised(self, name: str, own: Callable[..., Any] | None) -> Action:
        """``own`` (or the current emulator's method ``name``) under the charger's lock, with its signature
        (the service port checks the request's values against it)."""
        async def action(**values: Any) -> Any:
            async with self._lock:
                return await (own or getattr(self.emulator, name))(**values)

        action.__signature__ = inspect.signature(own or getattr(self.emulator, name))  # type: ignore[attr-defined]
        action.__name__ = name
        return action


def hil_command() -> list[str]:
    """The ``hil`` command of this installation: the one next to the interpreter, else on PATH, else
    ``python -m hil.cli``."""
    beside = Path(sys.executable).with_name("hil")
    found = str(beside) if beside.is_file() else shutil.which("hil")
    return [found] if found else [sys.executable, "-m", "hil.cli"]


def hil_do() -> str:
    """The ``hil do`` command line of this installation, for a rig file's commands."""
    return shlex.join([*hil_command(), "do"])


def control_commands(control_url: str, do: str = "hil do") -> dict[str, str]:
    """The rig file's commands for a charger whose service port is ``control_url``: every control-seam
    action and ``reset_to_defaults``, each a ``do`` call with the placeholders as its values."""
    base = control_url.rstrip("/")
    commands = {a: f"{do} {base}/{a} {_VALUES.get(a, 'connector:={connector}')}".rstrip() for a in ACTIONS}
    commands[RESET_COMMAND] = f"{do} {base}/factory_reset"
    return commands


def suite_rig(rig: Rig, *, ocpp: str, charge_point_id: str, csms_url: str, connectors: int, control_url: str,
              password: str | None = None, do: str = "hil do") -> RigSpec:
    """The rig file through which the suites reach the charger running on ``rig`` (started): its first
    ``connectors`` ports with their meters as Modbus TCP meters, and ``dut`` a charger connecting to
    ``csms_url`` (``ws://host:port/``), driven through the service port ``control_url``.

    ``ValueError`` names what does not fit (a csms_url without a port or not ws://, too few ports)."""
    where = urlsplit(csms_url)
    if where.scheme != "ws" or not where.hostname or where.port is None:
        raise ValueError(f"--csms {csms_url}: the suites' CSMS listens on ws://host:port/ (a port, no TLS)")
    if len(rig.spec.ports) < connectors:
        raise ValueError(f"rig {rig.spec.name!r}: {len(rig.spec.ports)} port(s), {connectors} connector(s) asked")
    resolved = rig.resolved_spec()
    ports = resolved.ports[:connectors]
    names = {p.name for p in ports}
    return RigSpec.model_validate({
        "name": f"charger under test {charge_point_id}",
        "description": f"evhil's OCPP {ocpp} emulator in its own process (hil charge-point) on rig {rig.spec.name}",
        "site": resolved.site.model_dump(),
        "ports": [p.model_dump() for p in ports],
        "meters": [m.model_dump() for m in resolved.meters if m.point in names],
        "dut": {
            "kind": "charger", "name": f"evhil emulator {charge_point_id} (hil charge-point --ocpp {ocpp})",
            "ocpp_version": ocpp, "connectors": connectors, "charge_point_id": charge_point_id,
            "password": password, "csms_host": where.hostname, "csms_port": where.port,
            "control": {"adapter": "command", "commands": control_commands(control_url, do), "timeout_s": 30.0},
        },
    })


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ChargerProcess:
    """``hil charge-point`` as a child process: OCPP ``ocpp`` on ``rig``'s first ``connectors`` ports,
    its CSMS URL and service port on free ports, its log in ``folder/charger-<ocpp>.log`` and the suites'
    rig file in ``rig_path`` (``folder/charger-under-test-<ocpp>.yaml``). ``settings``: configuration keys
    (1.6) or device-model variables (2.0.1) it is built with."""

    def __init__(self, folder: Path, *, ocpp: str = "1.6", rig: Path | None = None, connectors: int = 2,
                 charge_point_id: str = "EVHIL-CP1", settings: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.ocpp = ocpp
        self.rig = rig
        self.connectors = connectors
        self.charge_point_id = charge_point_id
        self.settings = settings or {}
        self.rig_path = folder / f"charger-under-test-{ocpp}.yaml"
        self.log_path = folder / f"charger-{ocpp}.log"
        self.info: dict[str, Any] = {}
        """The JSON line the process printed at start (``control``: its service port URL)."""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "ChargerProcess":
        """Start it and wait (up to ``timeout``) for its JSON line; ``RuntimeError`` with its log otherwise."""
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [*hil_command(), "charge-point", "--csms", f"ws://127.0.0.1:{free_port()}/",
                   "--id", self.charge_point_id, "--ocpp", self.ocpp, "--connectors", str(self.connectors),
                   "--control-port", "0", "--json", "--rig-out", str(self.rig_path),
                   *(["--rig", str(self.rig)] if self.rig else []),
                   *(arg for k, v in self.settings.items() for arg in ("--set", f"{k}={v}"))]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = self.log_path.read_text(errors="replace").partition("\n")
            if first[1]:
                try:
                    self.info = json.loads(first[0])
                    return self
                except json.JSONDecodeError:
                    break
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"hil charge-point did not start within {timeout:g} s (command {shlex.join(command)}): "
                           f"{self.log_path.read_text(errors='replace')[-800:]}")

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """The charger's ``status`` action: on or off, factory resets so far, boot status."""
        return dict(call(f"{self.info['control']}/status", timeout=timeout))

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def __enter__(self) -> "ChargerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
