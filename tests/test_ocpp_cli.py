"""`hil csms` and `hil charge-point` standalone: the emulator boots against the harness and both log it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_charge_point_emulator_boots_against_the_standalone_csms(version: str) -> None:
    csms = subprocess.Popen([sys.executable, "-m", "hil.cli", "csms", "--json", "--any"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = json.loads(csms.stdout.readline())["url"]  # type: ignore[union-attr]
        assert url.startswith("ws://127.0.0.1:")
        cp = subprocess.Popen([sys.executable, "-m", "hil.cli", "charge-point", "--csms", url, "--id", "CLI-CP",
                               "--ocpp", version], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4.0)
        cp.send_signal(signal.SIGINT)
        cp_out, cp_err = cp.communicate(timeout=20)
        assert cp.returncode == 0, cp_err
        assert "CLI-CP -> CALL BootNotification" in cp_out and "<- RESULT BootNotification" in cp_out
    finally:
        csms.send_signal(signal.SIGINT)
        csms_out, csms_err = csms.communicate(timeout=20)
    assert csms.returncode == 0, csms_err
    assert "CLI-CP <- CALL BootNotification" in csms_out and "CLI-CP -> RESULT BootNotification" in csms_out
    assert "StatusNotification" in csms_out
