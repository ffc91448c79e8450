"""Rig files: the shipped ones load; every kind of bad file gets one line naming file, line and field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.rig.loader import RigFileError, load_rig, parse_rig

RIGS = Path(__file__).resolve().parents[1] / "rigs"

GOOD = textwrap.dedent(
    """\
    name: t
    ports:
      - name: p1
    power_sources:
      - name: ps1
        port: p1
        profile: keysight_rp7900
        emulated: true
        limits: {voltage: 500, current: 100, power: 40000}
    meters:
      - {name: m1, model: sdm630, point: p1, emulated: true}
    ev_simulators:
      - {name: ev1, port: p1, emulated: true}
    """
)


@pytest.mark.parametrize("path", sorted(RIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_rigs_load(path: Path) -> None:
    spec = load_rig(path)
    assert spec.name
    if spec.instruments():  # a bench or an emulated rig
        assert spec.power_sources and spec.meters and spec.ev_simulators
    else:  # a recipe for a product under test: it names how the product is reached and driven
        assert spec.dut.control.adapter != "emulated" and (spec.dut.csms_url or spec.dut.kind == "charger")


def test_default_rig_is_a_small_congested_site() -> None:
    spec = load_rig(RIGS / "emulated.yaml")
    assert len(spec.ports) == 4 and spec.emulated
    assert [m.model for m in spec.meters].count("sdm630") == 4
    assert any(m.model == "sunspec" and m.point == "site" for m in spec.meters)
    port_max_a = sum(s.limits.power for s in spec.power_sources) / 3 / spec.site.phase_voltage
    assert spec.site.limit_a < port_max_a


def test_good_rig_parses() -> None:
    spec = parse_rig(GOOD)
    assert spec.power_sources[0].limits.voltage == 500


BAD = {
    # kind: (text, expected line, fragment of the message)
    "unknown top-level key": (GOOD + "colour: blue\n", 14, "unknown key 'colour'"),
    "unknown nested key": (GOOD.replace("power: 40000}", "power: 40000, volts: 3}"), 9, "unknown key 'volts'"),
    "wrong type": (GOOD.replace("current: 100", "current: lots"), 9, "power_sources[0].limits.current"),
    "negative limit": (GOOD.replace("voltage: 500", "voltage: -5"), 9, "greater than 0"),
    "missing limits": (GOOD.replace("    limits: {voltage: 500, current: 100, power: 40000}\n", ""), 5, "limits: Field required"),
    "unknown profile": (GOOD.replace("keysight_rp7900", "acme_9000"), 5, "unknown SCPI profile 'acme_9000'"),
    "unknown meter model": (GOOD.replace("model: sdm630", "model: sdm999"), 11, "unknown meter model 'sdm999'"),
    "undeclared port": (GOOD.replace("port: p1\n    profile", "port: p9\n    profile"), 5, "port 'p9' is not declared"),
    "duplicate names": (GOOD.replace("name: m1", "name: ps1"), None, "duplicate instrument 'ps1'"),
    "duplicate key": (GOOD.replace("    emulated: true\n    limits", "    emulated: true\n    emulated: false\n    limits"), 9, "duplicate key 'emulated'"),
    "real source without resource": (GOOD.replace("    emulated: true\n    limits", "    limits"), 5, "needs a resource"),
    "real tcp meter without host": (GOOD.replace("point: p1, emulated: true", "point: p1"), 11, "needs a host"),
    "bad meter point": (GOOD.replace("point: p1", "point: roof"), 11, "neither 'site' nor a declared port"),
    "YAML syntax": (GOOD.replace("ports:\n", "ports: [\n"), 3, "YAML"),
    "not a mapping": ("- just\n- a list\n", 1, "top level must be a mapping"),
    "empty file": ("", None, "is empty"),
    "bad unit id": (GOOD.replace("point: p1, emulated", "point: p1, unit: 300, emulated"), 11, "less than or equal to 247"),
    "bad control adapter": (GOOD + "dut: {control: {adapter: telepathy}}\n", 14, "dut.control.adapter"),
    "unknown control action": (GOOD + "dut: {control: {adapter: command, commands: {dance: x}}}\n", 14, "dut.control.commands"),
    "socketcand without host": (GOOD.replace("{name: ev1, port: p1, emulated: true}", "{name: ev1, port: p1}"), 13, "needs host and tcp_port"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_rig_gets_one_line(kind: str, tmp_path: Path) -> None:
    text, line, fragment = BAD[kind]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RigFileError) as info:
        load_rig(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    assert fragment in message, message
    if line is not None:
        assert info.value.line == line, message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RigFileError, match="no such file"):
        load_rig(tmp_path / "nope.yaml")


@pytest.mark.parametrize("kind", ["unknown top-level key", "YAML syntax", "undeclared port"])
def test_cli_bad_rig_exit_2_one_line_no_traceback(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD[kind][0])
    result = subprocess.run(
        [sys.executable, "-m", "hil.cli", "rig", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(path) in result.stderr.replace("\n", "") and "Traceback" not in result.stderr


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_loader_never_raises_anything_but_rig_file_error(text: str) -> None:
    try:
        parse_rig(text)
    except RigFileError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "ports", "power_sources", "meters", "site", "clock", "dut", "extra"]),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=10),
    )
)
def test_loader_on_structured_garbage(data: dict) -> None:
    import yaml

    try:
        parse_rig(yaml.safe_dump(data))
    except RigFileError as exc:
        assert "\n" not in str(exc)
