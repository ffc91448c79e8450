"""What a run ran on: the rig, the identity of every instrument, the device under test, package versions.

Shown as the Allure environment (``environment.xml`` in the results folder) and stored in the run record.
"""

from __future__ import annotations

import platform
import sys
from concurrent.futures import ThreadPoolExecutor, wait
from importlib import metadata
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from hil.rig.model import RigSpec

PACKAGES = ("evhil", "pytest", "allure-pytest", "ocpp", "websockets", "pymodbus", "python-can", "pyvisa",
            "pyvisa-py", "numpy", "scipy")
IDENTIFY_TIMEOUT_S = 5.0
"""How long the end of a run waits for all instruments together to say who they are [s]."""


def versions() -> dict[str, str]:
    """Python and the versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def rig_environment(spec: RigSpec, rig_file: Path | str) -> dict[str, str]:
    """Rig name, file and kind, and the device under test, from the rig file alone."""
    kind = f"emulated (clock x{spec.clock.scale:g})" if spec.emulated else "real bench"
    dut = spec.dut
    described = dut.name if dut.kind in ("reference", "none") else f"{dut.kind} {dut.name}"
    if dut.kind == "charger":
        described += f" ({dut.charge_point_id}, OCPP {dut.ocpp_version or '?'})"
    elif dut.kind == "csms" and dut.csms_url:
        described += f" ({dut.csms_url})"
    return {"rig": spec.name, "rig file": str(rig_file), "rig kind": kind, "device under test": described,
            "control seam": dut.control.adapter}


def instrument_identities(rig: Any) -> dict[str, str]:
    """``instrument <name>`` -> what it says it is and where, for a running ``hil.rig.rig.Rig``.

    Power sources answer ``*IDN?`` and meters their model and serial, all at once and within
    ``IDENTIFY_TIMEOUT_S``; EV simulators are named by address (identifying them means listening).
    An instrument that does not answer says why.
    """
    addresses = {a.name: a.text for a in rig.addresses()}
    jobs: dict[str, Any] = {s.name: (lambda n=s.name: rig.power_source(n).identify()) for s in rig.spec.power_sources}
    jobs.update({m.name: (lambda n=m.name: rig.meter(n).identify()) for m in rig.spec.meters})
    out: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=8)
    futures = {name: pool.submit(job) for name, job in jobs.items()}
    wait(futures.values(), timeout=IDENTIFY_TIMEOUT_S)
    for name, future in futures.items():
        if not future.done():
            text = f"no answer within {IDENTIFY_TIMEOUT_S:g} s"
        elif future.exception() is not None:
            text = f"not identified: {future.exception()}"
        else:
            identity = future.result()
            text = getattr(identity, "summary", None) or str(identity)
        out[f"instrument {name}"] = f"{text} at {addresses.get(name, '?')}"
    pool.shutdown(wait=False, cancel_futures=True)
    for e in rig.spec.ev_simulators:
        out[f"instrument {e.name}"] = f"EV simulator ({e.dbc or 'CHAdeMO'}) at {addresses.get(e.name, '?')}"
    return out


def host() -> dict[str, str]:
    """The machine the run ran on."""
    return {"host": platform.node(), "os": f"{platform.system()} {platform.release()}",
            "interpreter": sys.executable}


def write_environment_xml(environment: dict[str, str], results_dir: Path) -> Path:
    """Write the Allure environment file (``environment.xml``, read by Allure 2 and 3)."""
    root = ElementTree.Element("environment")
    for key, value in environment.items():
        parameter = ElementTree.SubElement(root, "parameter")
        ElementTree.SubElement(parameter, "key").text = key
        ElementTree.SubElement(parameter, "value").text = value
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "environment.xml"
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
