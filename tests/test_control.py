"""The control seam of a device under test.

- ``CommandControl`` and ``CommandOperator`` with real shell commands that record their arguments: placeholders
  filled and shell-quoted, and every way a command can go wrong gives one line naming it;
- ``PromptControl`` through a pseudo-terminal under plain pytest (capture on, no ``-s``): the question shows,
  Enter confirms, Ctrl-D and a timeout fail with one line naming the action; under pytest-xdist it fails at
  once instead of waiting for an answer nobody can give;
- ``dut.control.instruments`` in rig files, and ``RigControl`` moving an emulated rig's EV and power stage.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hil.control import CSMS_ACTIONS, CommandControl, CommandOperator, ControlError, RigControl, ServiceControl
from hil.instruments.chademo import SimState
from hil.rig.loader import RigFileError, load_rig, parse_rig
from hil.rig.rig import Rig
from hil.service_port import ServicePort

RIGS = Path(__file__).resolve().parents[1] / "rigs"


def record(log: Path, *words: str) -> str:
    """A command line that appends each of ``words`` (after the shell expanded them) as one line to ``log``."""
    return f"printf '%s\\n' {' '.join(words)} >> {shlex.quote(str(log))}"


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# -- CommandControl -------------------------------------------------------------------------------------
async def test_placeholders_are_filled_and_shell_quoted(tmp_path: Path) -> None:
    log = tmp_path / "log"
    control = CommandControl({
        "present_token": record(log, "token", "{token}", "{connector}"),
        "raise_fault": record(log, "fault", "{connector}", "{error}"),
        "cut_network": record(log, "network", "down"),
    })
    token = f"O'Brien 42; touch {tmp_path}/pwned"
    await control.present_token(token, connector=2)
    await control.raise_fault(1, "GroundFailure")
    await control.cut_network()
    assert lines(log) == ["token", token, "2", "fault", "1", "GroundFailure", "network", "down"]
    assert not (tmp_path / "pwned").exists(), "a placeholder's value must never run as shell code"


async def test_site_limit_fills_limit_and_delay(tmp_path: Path) -> None:
    log = tmp_path / "log"
    control = CommandControl({"set_site_limit": record(log, "{limit}", "{delay}")})
    await control.set_site_limit(16.0, 2.5)
    await control.set_site_limit(32.5)
    assert lines(log) == ["16", "2.5", "32.5", "0"]


async def test_a_missing_command_names_the_action_and_the_known_ones() -> None:
    with pytest.raises(ControlError) as info:
        await CommandControl({}).cut_network()
    message = str(info.value)
    assert "\n" not in message
    assert "dut.control.commands has no 'cut_network' command" in message
    assert "plug_in, unplug, present_token, cut_network" in message


async def test_an_unknown_placeholder_is_named() -> None:
    with pytest.raises(ControlError) as info:
        await CommandControl({"plug_in": "./ev.sh plug {conector}"}).plug_in(1)
    assert str(info.value) == ("dut.control.commands.plug_in: unknown placeholder 'conector'; "
                               "available: {connector}")


async def test_a_failing_command_names_itself_its_status_and_its_output() -> None:
    with pytest.raises(ControlError) as info:
        await CommandControl({"power_off": "echo relay 3 stuck >&2; exit 3"}).power_off()
    assert str(info.value) == "power_off: command 'echo relay 3 stuck >&2; exit 3' exited with status 3: relay 3 stuck"


async def test_a_command_past_its_timeout_is_killed_with_what_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = f"sleep 60 & echo $! > {shlex.quote(str(pid_file))}; wait"
    start = time.monotonic()
    with pytest.raises(ControlError) as info:
        await CommandControl({"cut_network": command}, timeout=0.5).cut_network()
    assert time.monotonic() - start < 5.0
    assert str(info.value) == f"cut_network: command {command!r} did not finish within 0.5 s; killed it"
    assert gone(int(pid_file.read_text())), "the command's child (sleep) outlived the timeout"


def gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


# -- CommandOperator ------------------------------------------------------------------------------------
async def test_service_adapter_posts_each_action_with_its_values_by_name() -> None:
    """``ServiceControl``: one request per action to the device's service port, values by name; the
    device's refusal is one line naming the action."""
    seen: list[tuple[str, dict[str, object]]] = []

    def record(action: str) -> Callable[..., Awaitable[None]]:
        async def act(**values: object) -> None:
            if values.get("connector") == 9:
                raise RuntimeError("no connector 9")
            seen.append((action, values))
        return act

    port = await ServicePort({a: record(a) for a in ("plug_in", "present_token", "raise_fault", "set_site_limit")}).start()
    try:
        control = ServiceControl(port.url + "/", timeout=5.0)
        await control.plug_in(2)
        await control.present_token("TAG 1", 2)
        await control.raise_fault(1, "OverCurrentFailure")
        await control.set_site_limit(48.5, 15.0)
        assert seen == [("plug_in", {"connector": 2}), ("present_token", {"token": "TAG 1", "connector": 2}),
                        ("raise_fault", {"connector": 1, "error_code": "OverCurrentFailure"}),
                        ("set_site_limit", {"limit_a": 48.5, "delay_s": 15.0})]
        with pytest.raises(ControlError, match=r"^plug_in: .*no connector 9 \(HTTP 500\)$"):
            await control.plug_in(9)
        with pytest.raises(ControlError, match=r"^unplug: .*unknown action 'unplug'"):
            await control.unplug(1)
    finally:
        await port.stop()
    with pytest.raises(ControlError, match="cannot reach the service port"):
        await ServiceControl(port.url, timeout=2.0).plug_in(1)


async def test_operator_fills_charge_point_and_profile_as_json(tmp_path: Path) -> None:
    log = tmp_path / "log"
    operator = CommandOperator("CP 7'B", {
        "set_charging_profile": record(log, "{charge_point}", "{connector}", "{profile}"),
        "reset": record(log, "{charge_point}", "{kind}"),
    })
    profile = {"chargingProfileId": 3, "stackLevel": 0, "chargingProfileKind": "Absolute",
               "description": "night tariff, 'cheap' hours", "chargingSchedule": {"chargingRateUnit": "A"}}
    await operator.set_charging_profile(1, profile)
    await operator.reset("Hard")
    out = lines(log)
    assert out[:2] == ["CP 7'B", "1"] and json.loads(out[2]) == profile
    assert out[3:] == ["CP 7'B", "Hard"]


async def test_operator_missing_command_and_unknown_placeholder() -> None:
    with pytest.raises(ControlError) as info:
        await CommandOperator("CP1", {}).remote_stop(5)
    assert "no 'remote_stop' command" in str(info.value) and ", ".join(CSMS_ACTIONS) in str(info.value)
    with pytest.raises(ControlError) as info:
        await CommandOperator("CP1", {"remote_stop": "csms stop {transaction_id}"}).remote_stop(5)
    assert str(info.value) == ("dut.control.commands.remote_stop: unknown placeholder 'transaction_id'; "
                               "available: {charge_point}, {transaction}")


# -- dut.control.instruments in rig files ---------------------------------------------------------------
RIG = textwrap.dedent(
    """\
    name: wired
    ports:
      - name: p1
    power_sources:
      - {name: ps1, port: p1, profile: keysight_rp7900, emulated: true,
         limits: {voltage: 500, current: 100, power: 40000, ramp: 2000}}
    meters:
      - {name: m1, model: sdm630, point: p1, emulated: true}
    ev_simulators:
      - {name: ev1, port: p1, emulated: true}
    dut:
      kind: charger
      ocpp_version: "1.6"
      control:
        adapter: command
        commands: {COMMANDS}
        instruments: {INSTRUMENTS}
    """
)


def rig_text(instruments: str, commands: str = "{}", adapter: str = "command") -> str:
    return (RIG.replace("{INSTRUMENTS}", instruments).replace("{COMMANDS}", commands)
            .replace("adapter: command", f"adapter: {adapter}"))


def test_a_rig_file_wires_actions_to_its_instruments() -> None:
    spec = parse_rig(rig_text("{plug_in: ev1, unplug: [ev1], power_off: ps1}", "{cut_network: net down}"))
    assert spec.dut.control.instruments == {"plug_in": ["ev1"], "unplug": ["ev1"], "power_off": ["ps1"]}
    assert spec.dut.control.commands == {"cut_network": "net down"}


BAD_WIRING = {
    # kind: (instruments, commands, adapter, fragment of the one-line error)
    "unknown instrument": ("{plug_in: ev9}", "{}", "command",
                           "dut.control.instruments.plug_in: no instrument named 'ev9'; plug_in needs one of "
                           "ev_simulators: ev1"),
    "EV action on a power source": ("{plug_in: ps1}", "{}", "command",
                                    "dut.control.instruments.plug_in: 'ps1' is listed under power_sources; plug_in "
                                    "needs one of ev_simulators: ev1"),
    "power action on a meter": ("{power_off: m1}", "{}", "command",
                                "dut.control.instruments.power_off: 'm1' is listed under meters; power_off needs one "
                                "of power_sources: ps1"),
    "action no instrument does": ("{present_token: ev1}", "{}", "command", "dut.control.instruments.present_token"),
    "both wired and a command": ("{plug_in: ev1}", "{plug_in: ./ev.sh plug}", "command",
                                 "dut.control.instruments: plug_in: also has a command in dut.control.commands"),
    "emulated adapter": ("{plug_in: ev1}", "{}", "emulated",
                         "dut.control.instruments: needs adapter 'command' or 'prompt'"),
    "two supplies": ("{power_off: [ps1, ps1]}", "{}", "command", "power_off: name one power source, not a list"),
    "more EVs than connectors": ("{plug_in: [ev1, ev1]}", "{}", "prompt",
                                 "dut.control.instruments.plug_in: 2 EV simulators for 1 connector(s)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_WIRING))
def test_bad_wiring_gets_one_line_naming_the_field(kind: str) -> None:
    instruments, commands, adapter, fragment = BAD_WIRING[kind]
    with pytest.raises(RigFileError) as info:
        parse_rig(rig_text(instruments, commands, adapter))
    assert "\n" not in str(info.value)
    assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("name", ["bench-keysight-sdm630.yaml", "bench-ea-sunspec.yaml"])
def test_bench_examples_wire_their_ev_simulator(name: str) -> None:
    control = load_rig(RIGS / name).dut.control
    assert control.instruments["plug_in"] == control.instruments["unplug"] == ["ev"]


# -- RigControl on an emulated rig ----------------------------------------------------------------------
class Person:
    """Stands in for the prompt adapter: records what it is asked to do."""

    def __init__(self) -> None:
        self.asked: list[tuple[object, ...]] = []

    def __getattr__(self, action: str) -> Callable[..., Awaitable[None]]:
        async def ask(*args: object) -> None:
            self.asked.append((action, *args))
        return ask


async def test_rig_control_moves_the_plant_through_the_rigs_instruments(tmp_path: Path) -> None:
    log = tmp_path / "log"
    spec = parse_rig(rig_text("{plug_in: ev1, unplug: ev1, ev_suspend: ev1, ev_resume: ev1, power_off: ps1, "
                              "power_on: ps1}", "{cut_network: " + json.dumps(record(log, "network", "down")) + "}"))
    commands = CommandControl(dict(spec.dut.control.commands))
    person = Person()
    with Rig(spec) as rig:
        assert rig.plant is not None
        port = rig.plant.port("p1")
        control = RigControl(rig, spec.dut.control.instruments, commands, person)
        assert port.ev is not None and port.ev.plugged_in and not port.stage.output_on
        await control.unplug()
        assert not port.ev.plugged_in
        with pytest.raises(ControlError, match=r"^ev_resume: EV simulator ev1 reports unplugged, not asking to "
                                               r"charge$"):
            await control.ev_resume()
        await control.plug_in()
        assert port.ev.plugged_in
        await control.power_on()
        assert port.stage.output_on
        await control.ev_resume()
        assert rig.ev("ev1").ping().state in (SimState.WAITING, SimState.CHARGING)
        await control.ev_suspend()
        assert rig.ev("ev1").ping().state in (SimState.STOPPING, SimState.STOPPED)
        await control.power_off()
        assert not port.stage.output_on
        assert person.asked == [] and lines(log) == []
        await control.cut_network()  # not wired, has a command
        await control.plug_in(2)  # connector 2 has no EV simulator wired and no command: the person's
        await control.present_token("TAG-1")
        assert lines(log) == ["network", "down"]
        assert person.asked == [("plug_in", 2), ("present_token", "TAG-1", 1)]
        with pytest.raises(ControlError, match=r"^rig file: dut.control.commands has no 'plug_in' command"):
            await RigControl(rig, spec.dut.control.instruments, commands).plug_in(2)  # the command adapter's error


# -- PromptControl through a pseudo-terminal ------------------------------------------------------------
CHILD_RIG = textwrap.dedent(
    """\
    name: prompt-bench
    ports:
      - name: p1
    power_sources:
      - {name: ps1, port: p1, profile: keysight_rp7900, emulated: true,
         limits: {voltage: 500, current: 100, power: 40000, ramp: 2000}}
    ev_simulators:
      - {name: ev1, port: p1, emulated: true}
    dut:
      kind: charger
      ocpp_version: "1.6"
      control:
        adapter: prompt
        timeout_s: 60
        instruments: {unplug: ev1}
    """
)

CHILD_TESTS = textwrap.dedent(
    """\
    from hil.control import PromptControl
    from hil.ocpp.fixtures import capture_suspended


    async def test_wired_to_the_ev_simulator(cp16, plant):
        await cp16.control.unplug()
        assert not plant.port("p1").ev.plugged_in


    async def test_confirmed(cp16):
        await cp16.control.cut_network()


    async def test_refused(cp16):
        await cp16.control.restore_network()


    async def test_unanswered(pytestconfig):
        await PromptControl(0.5, suspend=capture_suspended(pytestconfig)).power_off()
    """
)


class Terminal:
    """A child process on a pseudo-terminal (stdin, stdout and stderr); every wait gives up after ``timeout`` s."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "COLUMNS": "200"})
        os.close(slave)
        self.text = ""
        self._seen = 0

    def _read(self, until: float) -> bool:
        """Read what the child wrote until ``until`` (monotonic); False once the terminal is closed."""
        left = until - time.monotonic()
        if left <= 0 or not select.select([self.master], [], [], left)[0]:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every slave end is closed
            return False
        self.text += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30.0) -> None:
        """Wait for ``text`` to appear after what an earlier ``expect`` matched."""
        deadline = time.monotonic() + timeout
        while text not in self.text[self._seen:]:
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError(f"{text!r} did not appear on the terminal within {timeout:g} s:\n{self.text}")
        self._seen = self.text.index(text, self._seen) + len(text)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 30.0) -> int:
        """Read until the child exits; its exit status."""
        deadline = time.monotonic() + timeout
        while self._read(deadline) and time.monotonic() < deadline:
            pass
        try:
            return self.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the child did not finish within {timeout:g} s:\n{self.text}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def child_run(tmp_path: Path, *args: str) -> tuple[Terminal, Path]:
    (tmp_path / "rig.yaml").write_text(CHILD_RIG)
    (tmp_path / "test_bench.py").write_text(CHILD_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n"
                                         "asyncio_default_fixture_loop_scope = function\n")
    junit = tmp_path / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rig", "rig.yaml", "--color=no", "--tb=short",
            f"--junitxml={junit}", *args, "test_bench.py"]
    return Terminal(argv, tmp_path), junit


def outcomes(junit: Path) -> dict[str, str | None]:
    """Test name: ``None`` when it passed, else its failure message."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failure = case.find("failure")
        result[case.get("name", "")] = None if failure is None else failure.get("message", "")
    return result


def test_prompt_asks_on_the_terminal_under_captured_pytest(tmp_path: Path) -> None:
    terminal, junit = child_run(tmp_path)
    try:
        terminal.expect("[evhil] Disconnect the charger's network")
        terminal.expect("then press Enter")
        terminal.send(b"\n")
        terminal.expect("[evhil] Reconnect the charger's network")
        terminal.send(b"\x04")  # Ctrl-D: end of input on a terminal in canonical mode
        terminal.expect("[evhil] Switch the charger's supply off")
        status = terminal.finish()
    finally:
        terminal.close()
    assert status == 1, terminal.text
    result = outcomes(junit)
    assert result["test_wired_to_the_ev_simulator"] is None and result["test_confirmed"] is None, result
    refused, unanswered = result["test_refused"], result["test_unanswered"]
    assert refused == ("hil.control.ControlError: restore_network: 'Reconnect the charger's network' not confirmed: "
                       "input ended at the terminal (Ctrl-D or closed)")
    assert unanswered == ("hil.control.ControlError: power_off: nobody confirmed 'Switch the charger's supply off' "
                          "within 0.5 s")
    errors = [line for line in terminal.text.splitlines() if line.startswith("E ")]
    assert errors == [f"E   {refused}", f"E   {unanswered}"], terminal.text


def test_prompt_under_xdist_fails_at_once_without_a_terminal(tmp_path: Path) -> None:
    terminal, junit = child_run(tmp_path, "-n", "1", "-k", "confirmed")
    start = time.monotonic()
    try:
        status = terminal.finish(timeout=45.0)
    finally:
        terminal.close()
    assert status == 1, terminal.text
    assert time.monotonic() - start < 45.0
    assert "[evhil]" not in terminal.text, "a worker must not ask a question nobody can answer"
    assert outcomes(junit) == {"test_confirmed": (
        "hil.control.ControlError: cut_network: needs a person at the bench (Disconnect the charger's network (unplug "
        "its Ethernet or disable its modem)) but stdin is not a terminal (piped, closed or a pytest-xdist worker); use "
        "the 'command' adapter for unattended runs")}
