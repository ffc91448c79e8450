"""The rig suite checks instruments: on a rig that has none (a product reached only over the wire, see
``rigs/*-under-test.yaml``) there is nothing to check, and its tests skip saying so."""

from __future__ import annotations

import pytest

from hil.rig.model import RigSpec


@pytest.fixture(autouse=True)
def _instruments(rig_spec: RigSpec) -> None:
    if not rig_spec.instruments():
        pytest.skip(f"rig {rig_spec.name!r} has no instrument to check: its device under test is reached over the wire")
