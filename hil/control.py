"""The control seam of a device under test: plug in, unplug, present token, cut or restore its network,
raise or clear a fault, switch its supply off and on, make the EV pause or resume charging, pull the
cable out of the EV only (it stays in the charger's socket), and drive into or out of the parking bay.

A suite drives the device only through ``Control``, so the same test runs against evhil's emulator in CI
and a real charger on a bench. The rig file picks the adapter (``dut.control.adapter``):

- ``emulated``: calls the in-process emulator;
- ``command``: runs one shell command per action, with ``{connector}``, ``{token}`` and ``{error}``
  (``set_site_limit``: ``{limit}`` in A per phase and ``{delay}`` in s) filled in (how labs script a charger's test mode); a non-zero exit or a timeout is an error naming
  the command;
- ``prompt``: asks the person at the bench to do it and waits for Enter, up to the timeout.

Times: seconds.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from typing import Protocol

ACTIONS = ("plug_in", "unplug", "present_token", "cut_network", "restore_network", "raise_fault", "clear_fault",
           "power_off", "power_on", "ev_suspend", "ev_resume", "unplug_ev_side", "plug_in_ev_side", "bay_enter", "bay_leave")
SITE_ACTIONS = ("set_site_limit",)
"""What a suite asks of a site's load manager under test, besides the charger actions."""


class ControlError(RuntimeError):
    """An action on the device under test could not be carried out."""


class Control(Protocol):
    """What a suite may do to the device under test."""

    async def plug_in(self, connector: int = 1) -> None: ...

    async def unplug(self, connector: int = 1) -> None: ...

    async def present_token(self, token: str, connector: int = 1) -> None: ...

    async def cut_network(self) -> None: ...

    async def restore_network(self) -> None: ...

    async def raise_fault(self, connector: int = 1, error_code: str = "GroundFailure") -> None: ...

    async def clear_fault(self, connector: int = 1) -> None: ...

    async def power_off(self) -> None:
        """Switch the charger's supply off (a switched PDU on a bench)."""
        ...

    async def power_on(self) -> None: ...

    async def ev_suspend(self, connector: int = 1) -> None:
        """The EV stops asking for energy but stays plugged in (IEC 61851 state C to B; an EV simulator's
        "not ready")."""
        ...

    async def ev_resume(self, connector: int = 1) -> None: ...

    async def unplug_ev_side(self, connector: int = 1) -> None:
        """Pull the cable out of the EV; a detachable cable stays in the charger's socket."""
        ...

    async def plug_in_ev_side(self, connector: int = 1) -> None: ...

    async def bay_enter(self, connector: int = 1) -> None:
        """A vehicle drives into the connector's parking bay (its occupancy sensor)."""
        ...

    async def bay_leave(self, connector: int = 1) -> None: ...


class SiteControl(Protocol):
    """What a suite tells the load manager of a site under test; everything else (EVs, the building's load,
    meter faults, the network) the suite does to the site itself."""

    async def set_site_limit(self, limit_a: float, delay_s: float = 0.0) -> None:
        """The feeder limit the site must keep [A per phase], in force ``delay_s`` [s] from now (0: now; more:
        demand response announced ahead)."""
        ...


async def run_command(commands: dict[str, str], action: str, timeout: float, known: tuple[str, ...],
                      **values: object) -> None:
    """Run the rig file's command for ``action`` with ``values`` filled into its placeholders (shell-quoted);
    ``ControlError`` names the command when it is missing, fails or outlasts ``timeout`` [s]."""
    template = commands.get(action)
    if template is None:
        raise ControlError(f"rig file: dut.control.commands has no {action!r} command; "
                           f"define one of {', '.join(known)}")
    try:
        line = template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
    except KeyError as exc:
        raise ControlError(f"dut.control.commands.{action}: unknown placeholder {exc}; "
                           f"available: {', '.join('{' + k + '}' for k in values)}") from None
    proc = await asyncio.create_subprocess_shell(line, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise ControlError(f"{action}: command {line!r} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        text = out.decode("utf-8", "replace").strip()[-500:]
        raise ControlError(f"{action}: command {line!r} exited with status {proc.returncode}: {text}")


class CommandControl:
    """Runs ``commands[action]`` (a shell command line with placeholders) for each action."""

    def __init__(self, commands: dict[str, str], timeout: float = 60.0) -> None:
        self.commands = commands
        self.timeout = timeout

    async def _run(self, action: str, **values: object) -> None:
        await run_command(self.commands, action, self.timeout, ACTIONS, **values)

    async def plug_in(self, connector: int = 1) -> None:
        await self._run("plug_in", connector=connector)

    async def unplug(self, connector: int = 1) -> None:
        await self._run("unplug", connector=connector)

    async def present_token(self, token: str, connector: int = 1) -> None:
        await self._run("present_token", token=token, connector=connector)

    async def cut_network(self) -> None:
        await self._run("cut_network")

    async def restore_network(self) -> None:
        await self._run("restore_network")

    async def raise_fault(self, connector: int = 1, error_code: str = "GroundFailure") -> None:
        await self._run("raise_fault", connector=connector, error=error_code)

    async def clear_fault(self, connector: int = 1) -> None:
        await self._run("clear_fault", connector=connector)

    async def power_off(self) -> None:
        await self._run("power_off")

    async def power_on(self) -> None:
        await self._run("power_on")

    async def ev_suspend(self, connector: int = 1) -> None:
        await self._run("ev_suspend", connector=connector)

    async def ev_resume(self, connector: int = 1) -> None:
        await self._run("ev_resume", connector=connector)

    async def unplug_ev_side(self, connector: int = 1) -> None:
        await self._run("unplug_ev_side", connector=connector)

    async def plug_in_ev_side(self, connector: int = 1) -> None:
        await self._run("plug_in_ev_side", connector=connector)

    async def bay_enter(self, connector: int = 1) -> None:
        await self._run("bay_enter", connector=connector)

    async def bay_leave(self, connector: int = 1) -> None:
        await self._run("bay_leave", connector=connector)

    async def set_site_limit(self, limit_a: float, delay_s: float = 0.0) -> None:
        await run_command(self.commands, "set_site_limit", self.timeout, SITE_ACTIONS, limit=f"{limit_a:g}",
                          delay=f"{delay_s:g}")


class PromptControl:
    """Asks the person at the bench to carry out each action and waits for Enter."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout

    async def _ask(self, text: str) -> None:
        if not sys.stdin or not sys.stdin.isatty():
            raise ControlError(f"needs a person at the bench ({text}) but there is no terminal; "
                               "use the 'command' adapter for unattended runs")
        print(f"\n[evhil] {text}, then press Enter (timeout {self.timeout:g} s) ", end="", flush=True)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), self.timeout)
        except asyncio.TimeoutError:
            raise ControlError(f"nobody confirmed '{text}' within {self.timeout:g} s") from None

    async def plug_in(self, connector: int = 1) -> None:
        await self._ask(f"Plug the EV into connector {connector}")

    async def unplug(self, connector: int = 1) -> None:
        await self._ask(f"Unplug the EV from connector {connector}")

    async def present_token(self, token: str, connector: int = 1) -> None:
        await self._ask(f"Present token {token} at connector {connector}")

    async def cut_network(self) -> None:
        await self._ask("Disconnect the charger's network (unplug its Ethernet or disable its modem)")

    async def restore_network(self) -> None:
        await self._ask("Reconnect the charger's network")

    async def raise_fault(self, connector: int = 1, error_code: str = "GroundFailure") -> None:
        await self._ask(f"Provoke a {error_code} fault on connector {connector}")

    async def clear_fault(self, connector: int = 1) -> None:
        await self._ask(f"Clear the fault on connector {connector}")

    async def power_off(self) -> None:
        await self._ask("Switch the charger's supply off")

    async def power_on(self) -> None:
        await self._ask("Switch the charger's supply on again")

    async def ev_suspend(self, connector: int = 1) -> None:
        await self._ask(f"Make the EV on connector {connector} stop requesting energy (state B), keep it plugged in")

    async def ev_resume(self, connector: int = 1) -> None:
        await self._ask(f"Make the EV on connector {connector} request energy again (state C)")

    async def unplug_ev_side(self, connector: int = 1) -> None:
        await self._ask(f"Pull the cable of connector {connector} out of the EV, leave it in the charger")

    async def plug_in_ev_side(self, connector: int = 1) -> None:
        await self._ask(f"Plug the cable of connector {connector} back into the EV")

    async def bay_enter(self, connector: int = 1) -> None:
        await self._ask(f"Drive a vehicle into the parking bay of connector {connector}")

    async def bay_leave(self, connector: int = 1) -> None:
        await self._ask(f"Drive the vehicle out of the parking bay of connector {connector}")

    async def set_site_limit(self, limit_a: float, delay_s: float = 0.0) -> None:
        when = "now" if delay_s <= 0 else f"from {delay_s:g} s from now"
        await self._ask(f"Set the site limit of the load manager to {limit_a:g} A per phase, {when}")


CSMS_ACTIONS = ("remote_start", "remote_stop", "reset", "unlock", "get_configuration", "change_configuration",
                "clear_cache", "set_charging_profile", "clear_charging_profile", "get_composite_schedule")


class Operator(Protocol):
    """What a suite asks the operator of a CSMS under test to do to one charge point. Each action only
    starts the CSMS's request; the suite checks the request the charge point receives. ``profile`` is an
    OCPP-J charging profile (camelCase), ``duration`` in s."""

    async def remote_start(self, connector: int, token: str) -> None: ...

    async def remote_stop(self, transaction: int) -> None: ...

    async def reset(self, kind: str) -> None: ...

    async def unlock(self, connector: int) -> None: ...

    async def get_configuration(self, key: str | None = None) -> None: ...

    async def change_configuration(self, key: str, value: str) -> None: ...

    async def clear_cache(self) -> None: ...

    async def set_charging_profile(self, connector: int, profile: dict) -> None: ...

    async def clear_charging_profile(self, profile_id: int) -> None: ...

    async def get_composite_schedule(self, connector: int, duration: int) -> None: ...


class CommandOperator:
    """Runs ``commands[action]`` for each operator action (typically a call to the CSMS's API), with
    ``{charge_point}``, ``{connector}``, ``{token}``, ``{transaction}``, ``{kind}``, ``{key}``,
    ``{value}``, ``{profile}`` (JSON), ``{profile_id}`` and ``{duration}`` filled in."""

    def __init__(self, charge_point: str, commands: dict[str, str], timeout: float = 60.0) -> None:
        self.charge_point = charge_point
        self.commands = commands
        self.timeout = timeout

    async def _do(self, action: str, **values: object) -> None:
        await run_command(self.commands, action, self.timeout, CSMS_ACTIONS, charge_point=self.charge_point, **values)

    async def remote_start(self, connector: int, token: str) -> None:
        await self._do("remote_start", connector=connector, token=token)

    async def remote_stop(self, transaction: int) -> None:
        await self._do("remote_stop", transaction=transaction)

    async def reset(self, kind: str) -> None:
        await self._do("reset", kind=kind)

    async def unlock(self, connector: int) -> None:
        await self._do("unlock", connector=connector)

    async def get_configuration(self, key: str | None = None) -> None:
        await self._do("get_configuration", key=key or "")

    async def change_configuration(self, key: str, value: str) -> None:
        await self._do("change_configuration", key=key, value=value)

    async def clear_cache(self) -> None:
        await self._do("clear_cache")

    async def set_charging_profile(self, connector: int, profile: dict) -> None:
        await self._do("set_charging_profile", connector=connector, profile=json.dumps(profile))

    async def clear_charging_profile(self, profile_id: int) -> None:
        await self._do("clear_charging_profile", profile_id=profile_id)

    async def get_composite_schedule(self, connector: int, duration: int) -> None:
        await self._do("get_composite_schedule", connector=connector, duration=duration)
