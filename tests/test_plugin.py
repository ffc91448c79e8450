"""The pytest plugin: --rig, bad rigs, unreachable instruments, bench/emulated markers."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_source_fails_with_name_address_and_cause(pytester: pytest.Pytester) -> None:
    port = closed_port()
    rig = pytester.path / "rig.yaml"
    rig.write_text(textwrap.dedent(f"""\
        name: gone
        power_sources:
          - name: supply
            profile: keysight_rp7900
            resource: "TCPIP0::127.0.0.1::{port}::SOCKET"
            timeout_ms: 500
            limits: {{voltage: 50, current: 5, power: 250}}
        """))
    pytester.makepyfile("def test_uses_source(power_source):\n    power_source.identify()\n")
    result = pytester.runpytest_subprocess("--rig", str(rig), "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*supply (TCPIP0::127.0.0.1::{port}::SOCKET)*"])
    assert "Traceback" not in result.stdout.str()


def test_bad_rig_is_a_usage_error(pytester: pytest.Pytester) -> None:
    rig = pytester.path / "rig.yaml"
    rig.write_text("name: x\nbogus: 1\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--rig", str(rig), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{rig}:2: bogus: unknown key 'bogus'*"])


def test_bench_tests_skip_on_emulated_rig(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent("""\
        import pytest

        @pytest.mark.bench
        def test_real():
            raise AssertionError("must not run on an emulated rig")

        def test_header_names_rig(rig):
            assert rig.spec.name == "emulated"
        """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["evhil rig: emulated (emulated)*"])
