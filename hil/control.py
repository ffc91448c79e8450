"""The control seam of a device under test: plug in, unplug, present token, cut or restore its network,
raise or clear a fault, switch its supply off and on, make the EV pause or resume charging, pull the
cable out of the EV only (it stays in the charger's socket), and drive into or out of the parking bay.

A suite drives the device only through ``Control``, so the same test runs against evhil's emulator in CI
and a real charger on a bench. The rig file picks the adapter (``dut.control.adapter``):

- ``emulated``: calls the in-process emulator;
- ``command``: runs one shell command per action, with ``{connector}``, ``{token}`` and ``{error}``
  (``set_site_limit``: ``{limit}`` in A per phase and ``{delay}`` in s) filled in (how labs script a charger's test mode); a non-zero exit or a timeout is an error naming
  the command. A command runs without a terminal (stdin from /dev/null) in its own process group, so a
  timeout kills everything it started;
- ``prompt``: asks the person at the bench to do it and waits for Enter, up to the timeout (see
  ``PromptControl``: it needs stdin to be a terminal);
- ``service``: one HTTP request per action to the device's service port (``ServiceControl``).

On a bench (``RigControl``) ``dut.control.instruments`` wires actions to the rig's own instruments:
``plug_in``, ``unplug``, ``ev_suspend`` and ``ev_resume`` to an EV simulator, ``power_off`` and ``power_on``
to a power source feeding the charger. Each action is done by its instrument, else by its command, else
by the adapter (``prompt`` asks; ``command`` names the missing command).

Times: seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shlex
import signal
import sys
import termios
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from hil.instruments.errors import InstrumentError
from hil.service_port import ServicePortError, call

if TYPE_CHECKING:
    from hil.instruments.ev_simulator import SimulatorStatus
    from hil.rig.rig import Rig

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
    # Its own process group, so a timeout or an interrupted run kills what the command started too.
    proc = await asyncio.create_subprocess_shell(line, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        raise ControlError(f"{action}: command {line!r} did not finish within {timeout:g} s; killed it") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if proc.returncode != 0:
        text = out.decode("utf-8", "replace").strip()[-500:]
        raise ControlError(f"{action}: command {line!r} exited with status {proc.returncode}: {text}")


class ActionControl:
    """The control seam's actions, each handed to ``_act(action, **values)`` with its values by parameter name
    (``connector``, ``token``, ``error_code``; ``set_site_limit``: ``limit_a``, ``delay_s``): the adapters
    that carry an action out the same way whatever it is derive from it."""

    async def _act(self, action: str, **values: object) -> None:
        raise NotImplementedError

    async def plug_in(self, connector: int = 1) -> None:
        await self._act("plug_in", connector=connector)

    async def unplug(self, connector: int = 1) -> None:
        await self._act("unplug", connector=connector)

    async def present_token(self, token: str, connector: int = 1) -> None:
        await self._act("present_token", token=token, connector=connector)

    async def cut_network(self) -> None:
        await self._act("cut_network")

    async def restore_network(self) -> None:
        await self._act("restore_network")

    async def raise_fault(self, connector: int = 1, error_code: str = "GroundFailure") -> None:
        await self._act("raise_fault", connector=connector, error_code=error_code)

    async def clear_fault(self, connector: int = 1) -> None:
        await self._act("clear_fault", connector=connector)

    async def power_off(self) -> None:
        await self._act("power_off")

    async def power_on(self) -> None:
        await self._act("power_on")

    async def ev_suspend(self, connector: int = 1) -> None:
        await self._act("ev_suspend", connector=connector)

    async def ev_resume(self, connector: int = 1) -> None:
        await self._act("ev_resume", connector=connector)

    async def unplug_ev_side(self, connector: int = 1) -> None:
        await self._act("unplug_ev_side", connector=connector)

    async def plug_in_ev_side(self, connector: int = 1) -> None:
        await self._act("plug_in_ev_side", connector=connector)

    async def bay_enter(self, connector: int = 1) -> None:
        await self._act("bay_enter", connector=connector)

    async def bay_leave(self, connector: int = 1) -> None:
        await self._act("bay_leave", connector=connector)

    async def set_site_limit(self, limit_a: float, delay_s: float = 0.0) -> None:
        await self._act("set_site_limit", limit_a=limit_a, delay_s=delay_s)


class CommandControl(ActionControl):
    """Runs ``commands[action]`` (a shell command line with placeholders) for each action. The placeholders
    are the values' names, but ``{error}`` for the error code and, for ``set_site_limit``, ``{limit}`` [A
    per phase] and ``{delay}`` [s]."""

    PLACEHOLDERS = {"error_code": "error", "limit_a": "limit", "delay_s": "delay"}

    def __init__(self, commands: dict[str, str], timeout: float = 60.0) -> None:
        self.commands = commands
        self.timeout = timeout

    async def _act(self, action: str, **values: object) -> None:
        known = SITE_ACTIONS if action in SITE_ACTIONS else ACTIONS
        filled = {self.PLACEHOLDERS.get(k, k): f"{v:g}" if isinstance(v, float) else v for k, v in values.items()}
        await run_command(self.commands, action, self.timeout, known, **filled)


class ServiceControl(ActionControl):
    """Each action is a request to the device's service port (``hil.service_port``): ``POST <url>/<action>``
    with the action's values by name (``connector``, ``token``, ``error_code``; ``set_site_limit``:
    ``limit_a``, ``delay_s``), as ``hil charge-point --control-port`` and ``examples/site_load_manager.py``
    serve them. What ``hil do`` does from a command line, without a process per action. A refusal, a
    failure or an unreachable port is a one-line ``ControlError`` naming the action."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    async def _act(self, action: str, **values: object) -> None:
        try:
            await asyncio.to_thread(call, f"{self.url}/{action}", self.timeout, **values)
        except ServicePortError as exc:
            raise ControlError(f"{action}: {exc}") from None


class PromptControl:
    """Asks the person at the bench to carry out each action: Enter confirms, end of input (Ctrl-D) says it
    could not be done, and nothing within ``timeout`` [s] is an error too.

    The question goes to stdout, the answer is read from stdin, which must be a terminal (POSIX). A run
    whose stdin is piped or closed, and every pytest-xdist worker, has none and gets a one-line
    ``ControlError`` at once rather than a question nobody sees. ``/dev/tty`` is deliberately not used as
    a fallback: the person answers where the run was started, and parallel workers never prompt on one
    terminal at the same time. Input typed ahead is discarded first, so a stray Enter cannot confirm an
    action that was not asked yet.

    ``suspend`` returns a context in which the test runner's capture of stdin and stdout is off (under
    pytest: ``hil.ocpp.fixtures.capture_suspended(config)``); without it a captured pytest run has no
    terminal (only ``pytest -s`` would).
    """

    def __init__(self, timeout: float = 60.0,
                 suspend: Callable[[], contextlib.AbstractContextManager[object]] | None = None) -> None:
        self.timeout = timeout
        self.suspend = suspend or contextlib.nullcontext
        self._one_at_a_time = asyncio.Lock()

    async def _ask(self, text: str, action: str | None = None) -> None:
        """Ask for ``text``; ``ControlError`` (one line, starting with ``action``) unless Enter confirms it."""
        who = f"{action}: " if action else ""
        async with self._one_at_a_time:
            with self.suspend():
                stdin = sys.stdin
                if stdin is None or not stdin.isatty():
                    raise ControlError(f"{who}needs a person at the bench ({text}) but stdin is not a terminal "
                                       "(piped, closed or a pytest-xdist worker); use the 'command' adapter for "
                                       "unattended runs")
                fd = stdin.fileno()
                termios.tcflush(fd, termios.TCIFLUSH)
                print(f"\n[evhil] {text}, then press Enter (Ctrl-D if you cannot; timeout {self.timeout:g} s) ",
                      end="", flush=True)
                try:
                    line = await asyncio.to_thread(_read_line, fd, self.timeout)
                except EOFError:
                    print(flush=True)
                    raise ControlError(f"{who}'{text}' not confirmed: input ended at the terminal (Ctrl-D or "
                                       "closed)") from None
                if line is None:
                    print(flush=True)
                    raise ControlError(f"{who}nobody confirmed '{text}' within {self.timeout:g} s")

    async def plug_in(self, connector: int = 1) -> None:
        await self._ask(f"Plug the EV into connector {connector}", "plug_in")

    async def unplug(self, connector: int = 1) -> None:
        await self._ask(f"Unplug the EV from connector {connector}", "unplug")

    async def present_token(self, token: str, connector: int = 1) -> None:
        await self._ask(f"Present token {token} at connector {connector}", "present_token")

    async def cut_network(self) -> None:
        await self._ask("Disconnect the charger's network (unplug its Ethernet or disable its modem)", "cut_network")

    async def restore_network(self) -> None:
        await self._ask("Reconnect the charger's network", "restore_network")

    async def raise_fault(self, connector: int = 1, error_code: str = "GroundFailure") -> None:
        await self._ask(f"Provoke a {error_code} fault on connector {connector}", "raise_fault")

    async def clear_fault(self, connector: int = 1) -> None:
        await self._ask(f"Clear the fault on connector {connector}", "clear_fault")

    async def power_off(self) -> None:
        await self._ask("Switch the charger's supply off", "power_off")

    async def power_on(self) -> None:
        await self._ask("Switch the charger's supply on again", "power_on")

    async def ev_suspend(self, connector: int = 1) -> None:
        await self._ask(f"Make the EV on connector {connector} stop requesting energy (state B), keep it plugged in",
                        "ev_suspend")

    async def ev_resume(self, connector: int = 1) -> None:
        await self._ask(f"Make the EV on connector {connector} request energy again (state C)", "ev_resume")

    async def unplug_ev_side(self, connector: int = 1) -> None:
        await self._ask(f"Pull the cable of connector {connector} out of the EV, leave it in the charger",
                        "unplug_ev_side")

    async def plug_in_ev_side(self, connector: int = 1) -> None:
        await self._ask(f"Plug the cable of connector {connector} back into the EV", "plug_in_ev_side")

    async def bay_enter(self, connector: int = 1) -> None:
        await self._ask(f"Drive a vehicle into the parking bay of connector {connector}", "bay_enter")

    async def bay_leave(self, connector: int = 1) -> None:
        await self._ask(f"Drive the vehicle out of the parking bay of connector {connector}", "bay_leave")

    async def set_site_limit(self, limit_a: float, delay_s: float = 0.0) -> None:
        when = "now" if delay_s <= 0 else f"from {delay_s:g} s from now"
        await self._ask(f"Set the site limit of the load manager to {limit_a:g} A per phase, {when}")


def _read_line(fd: int, timeout: float) -> bytes | None:
    """The next line typed at terminal ``fd`` (in canonical mode the terminal hands over whole lines), or
    ``None`` after ``timeout`` [s]; ``EOFError`` when input ends (Ctrl-D on an empty line, terminal gone).
    Never blocks past ``timeout``, so no reader is left behind on the terminal."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        try:
            chunk = os.read(fd, 1024)
        except OSError as exc:  # EIO: the terminal hung up
            raise EOFError(str(exc)) from exc
        if not chunk:
            raise EOFError("end of input")
        line += chunk
    return line


_T = TypeVar("_T")

_EV_COMMANDS: dict[str, tuple[str, Callable[["SimulatorStatus"], bool], str]] = {
    # action: (EVSimulator method, what its answer must show, that in words)
    "plug_in": ("plug_in", lambda s: s.plugged_in, "plugged in"),
    "unplug": ("unplug", lambda s: not s.plugged_in, "unplugged"),
    "ev_suspend": ("stop", lambda s: s.state.name not in ("WAITING", "CHARGING"), "not asking to charge"),
    "ev_resume": ("start", lambda s: s.state.name in ("WAITING", "CHARGING"), "asking to charge"),
}


class RigControl:
    """The control seam as a bench's rig file describes it: each action is done by the rig's own instrument
    wired to it (``dut.control.instruments``), else by its command (``dut.control.commands``), else by
    ``fallback``: the prompt or service adapter, or (``None``) the command adapter, whose error names the
    missing command.

    ``wiring`` maps an action to instrument names. ``plug_in``, ``unplug``, ``ev_suspend`` and ``ev_resume``
    name the EV simulator of each connector (connector k: the k-th name; a connector beyond the list is not
    wired): ``ev_suspend`` is the simulator's normal stop request, ``ev_resume`` its start (it closes its
    contactor once the charger's output is energised). ``power_off`` and ``power_on`` name the power source
    feeding the charger: off at once (no ramp: a power failure), on at the set points the source holds.
    Drivers block, so they run in a worker thread. A driver's error, or an instrument that does not report
    the state asked for, is a one-line ``ControlError`` naming the action and the instrument.
    """

    def __init__(self, rig: Rig, wiring: Mapping[str, Sequence[str]], commands: CommandControl,
                 fallback: Control | None = None) -> None:
        self.rig = rig
        self.wiring = wiring
        self.commands = commands
        self.fallback = fallback

    def _wired(self, action: str, connector: int = 1) -> str | None:
        names = self.wiring.get(action, ())
        return names[connector - 1] if 1 <= connector <= len(names) else None

    def _other(self, action: str) -> Control:
        """Who does ``action`` when no instrument does."""
        return self.commands if self.fallback is None or action in self.commands.commands else self.fallback

    @staticmethod
    async def _drive(action: str, instrument: str, call: Callable[[], _T]) -> _T:
        try:
            return await asyncio.to_thread(call)
        except (InstrumentError, LookupError) as exc:
            raise ControlError(f"{action}: {instrument}: {exc}") from exc

    async def _ev(self, action: str, connector: int) -> bool:
        """Drive the connector's EV simulator; False when none is wired for it."""
        name = self._wired(action, connector)
        if name is None:
            return False
        method, reached, words = _EV_COMMANDS[action]
        status = await self._drive(action, f"EV simulator {name}", lambda: getattr(self.rig.ev(name), method)())
        if not reached(status):
            raise ControlError(f"{action}: EV simulator {name} reports {status.state.name.lower()}, not {words}")
        return True

    async def _supply(self, action: str, on: bool) -> bool:
        """Switch the wired power source; False when none is wired."""
        name = self._wired(action)
        if name is None:
            return False

        def switch() -> bool:
            source = self.rig.power_source(name)
            source.output(on)
            return source.is_output_on()

        if await self._drive(action, f"power source {name}", switch) != on:
            raise ControlError(f"{action}: power source {name} still reports its output {'off' if on else 'on'}")
        return True

    async def plug_in(self, connector: int = 1) -> None:
        if not await self._ev("plug_in", connector):
            await self._other("plug_in").plug_in(connector)

    async def unplug(self, connector: int = 1) -> None:
        if not await self._ev("unplug", connector):
            await self._other("unplug").unplug(connector)

    async def ev_suspend(self, connector: int = 1) -> None:
        if not await self._ev("ev_suspend", connector):
            await self._other("ev_suspend").ev_suspend(connector)

    async def ev_resume(self, connector: int = 1) -> None:
        if not await self._ev("ev_resume", connector):
            await self._other("ev_resume").ev_resume(connector)

    async def power_off(self) -> None:
        if not await self._supply("power_off", False):
            await self._other("power_off").power_off()

    async def power_on(self) -> None:
        if not await self._supply("power_on", True):
            await self._other("power_on").power_on()

    async def present_token(self, token: str, connector: int = 1) -> None:
        await self._other("present_token").present_token(token, connector)

    async def cut_network(self) -> None:
        await self._other("cut_network").cut_network()

    async def restore_network(self) -> None:
        await self._other("restore_network").restore_network()

    async def raise_fault(self, connector: int = 1, error_code: str = "GroundFailure") -> None:
        await self._other("raise_fault").raise_fault(connector, error_code)

    async def clear_fault(self, connector: int = 1) -> None:
        await self._other("clear_fault").clear_fault(connector)

    async def unplug_ev_side(self, connector: int = 1) -> None:
        await self._other("unplug_ev_side").unplug_ev_side(connector)

    async def plug_in_ev_side(self, connector: int = 1) -> None:
        await self._other("plug_in_ev_side").plug_in_ev_side(connector)

    async def bay_enter(self, connector: int = 1) -> None:
        await self._other("bay_enter").bay_enter(connector)

    async def bay_leave(self, connector: int = 1) -> None:
        await self._other("bay_leave").bay_leave(connector)


CSMS_ACTIONS = ("remote_start", "remote_stop", "reset", "unlock", "get_configuration", "change_configuration",
                "clear_cache", "set_charging_profile", "clear_charging_profile", "get_composite_schedule")


class Operator(Protocol):
    """What a suite asks the operator of a CSMS under test to do to one charge point. Each action returns
    once the CSMS has taken it on (evhil's own console, ``hil.ocpp.csms.HarnessOperator``: once the charge
    point answered, returning the answer); the suite checks the request the charge point receives.
    ``profile`` is an OCPP-J charging profile (camelCase), ``duration`` in s."""

    async def remote_start(self, connector: int, token: str) -> object: ...

    async def remote_stop(self, transaction: int) -> object: ...

    async def reset(self, kind: str) -> object: ...

    async def unlock(self, connector: int) -> object: ...

    async def get_configuration(self, key: str | None = None) -> object: ...

    async def change_configuration(self, key: str, value: str) -> object: ...

    async def clear_cache(self) -> object: ...

    async def set_charging_profile(self, connector: int, profile: dict) -> object: ...

    async def clear_charging_profile(self, profile_id: int) -> object: ...

    async def get_composite_schedule(self, connector: int, duration: int) -> object: ...


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
