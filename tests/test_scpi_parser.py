"""The SCPI parser and the emulated instrument's command handling, without a socket."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.emulators.scpi import ScpiInstrument
from hil.emulators.scpi_parser import ERROR_TEXT, Pattern, ScpiError, parse_number, split_message
from hil.plant import Plant, Port


@pytest.fixture
def keysight() -> ScpiInstrument:
    return ScpiInstrument(Plant([Port("p1")]), "p1", "keysight_rp7900")


@pytest.fixture
def ea() -> ScpiInstrument:
    return ScpiInstrument(Plant([Port("p1")]), "p1", "ea_psb10000")


def drain(instrument: ScpiInstrument) -> list[int]:
    codes = [code for code, _ in instrument.errors]
    instrument.errors.clear()
    return codes


@pytest.mark.parametrize(
    "header", ["VOLT", "VOLTAGE", "volt", "Voltage", "SOUR:VOLT", "SOURCE:VOLTAGE:LEVEL", "VOLT:LEV:IMM:AMPL", ":SOUR:VOLT:IMM"]
)
def test_pattern_accepts_long_short_and_optional_forms(header: str) -> None:
    pattern = Pattern.compile("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    assert pattern.match(header.lstrip(":").split(":"))


@pytest.mark.parametrize("header", ["VOL", "VOLTA", "SOU:VOLT", "VOLT:LEVEL:LEVEL", "LEV", "VOLT:PROT"])
def test_pattern_rejects_partial_and_wrong_forms(header: str) -> None:
    pattern = Pattern.compile("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    assert not pattern.match(header.split(":"))


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [("12.5", "V", 12.5), ("12.5V", "V", 12.5), ("12.5 v", "V", 12.5), ("500mV", "V", 0.5), ("500 MV", "V", 0.5),
     ("3.5kW", "W", 3500.0), ("2E3", "W", 2000.0), ("1.5MAW", "W", 1.5e6), ("250 mA", "A", 0.25), ("-.5", "A", -0.5)],
)
def test_numbers_with_units_and_prefixes(text: str, unit: str, value: float) -> None:
    assert parse_number(text, unit) == pytest.approx(value)


@pytest.mark.parametrize(("text", "code"), [("12.5A", -131), ("12.5kV2", -121), ("twelve", -104), ("1..2", -121)])
def test_bad_numbers_have_their_error_codes(text: str, code: int) -> None:
    with pytest.raises(ScpiError) as err:
        parse_number(text, "V")
    assert err.value.code == code


def test_split_keeps_semicolons_inside_strings() -> None:
    assert split_message('SYST:TEXT "a;b";*IDN?') == ['SYST:TEXT "a;b"', "*IDN?"]


def test_compound_message_follows_the_scpi_path_rule(keysight: ScpiInstrument) -> None:
    # VOLT:PROT 450 leaves the path at VOLT:, so ";PROT?" is VOLT:PROT? and ";:VOLT?" starts from the root.
    assert keysight.handle("VOLT:PROT 450;PROT?;:VOLT 12;:VOLT?") == "+4.500000E+02;+1.200000E+01"
    assert drain(keysight) == []
    # Without the leading colon the second header is MEAS:MEAS:CURR?: undefined, as on a real instrument.
    assert keysight.handle("MEAS:VOLT?;MEAS:CURR?") == "+0.000000E+00"
    assert drain(keysight) == [-113]


def test_min_max_def_and_range(keysight: ScpiInstrument) -> None:
    keysight.handle("CURR MAX")
    assert float(keysight.handle("CURR?") or "nan") == pytest.approx(204.0)
    keysight.handle("CURR MIN")
    assert float(keysight.handle("CURR?") or "nan") == 0.0
    keysight.handle("VOLT 5000")
    assert drain(keysight) == [-222]
    assert float(keysight.handle("VOLT?") or "nan") == 0.0, "an out-of-range value must not be kept"


def test_error_queue_esr_and_stb(keysight: ScpiInstrument) -> None:
    keysight.handle("BOGUS 1")
    keysight.handle("VOLT 1,2")
    assert keysight.handle("*STB?") == "4"  # error/event queue not empty
    assert int(keysight.handle("*ESR?") or "0") & 0x20  # command error bit
    assert keysight.handle("*ESR?") == "0"  # read clears
    assert keysight.handle("SYST:ERR?") == '-113,"Undefined header; BOGUS"'
    assert keysight.handle("SYST:ERR?").startswith("-108,")  # type: ignore[union-attr]
    assert keysight.handle("SYST:ERR?") == '+0,"No error"'


def test_error_queue_overflow_keeps_minus_350_last(keysight: ScpiInstrument) -> None:
    for _ in range(40):
        keysight.handle("NOPE")
    codes = [code for code, _ in keysight.errors]
    assert len(codes) == keysight.profile.error_queue_length and codes[-1] == -350


def test_command_error_discards_the_rest_of_the_message(keysight: ScpiInstrument) -> None:
    keysight.handle("VOLT 3;BOGUS;:VOLT 7")
    assert float(keysight.handle("VOLT?") or "nan") == 3.0


def test_missing_and_extra_parameters(keysight: ScpiInstrument) -> None:
    keysight.handle("VOLT")
    keysight.handle("VOLT? 3")
    keysight.handle("OUTP:PROT:CLE 1")
    keysight.handle("MEAS:VOLT 3")
    assert drain(keysight) == [-109, -108, -108, -113]


def test_ea_requires_remote_lock_and_answers_with_units(ea: ScpiInstrument) -> None:
    ea.handle("SYST:LOCK OFF")
    ea.handle("SOUR:VOLT 10")
    assert drain(ea) == [-221]
    assert ea.handle("SYST:LOCK:OWN?") == "NONE"
    ea.handle("SYST:LOCK ON")
    ea.handle("SOUR:VOLT 10")
    assert ea.handle("SOUR:VOLT?") == "10.00V"
    assert ea.handle("OUTP?") == "OFF"
    assert ea.handle("MEAS:ARR?") == "0.00V, 0.00A, 0.00W"


def test_ea_ignores_out_of_range_silently(ea: ScpiInstrument) -> None:
    ea.handle("SOUR:VOLT 20;:SOUR:VOLT 9000")
    assert drain(ea) == []
    assert ea.handle("SOUR:VOLT?") == "20.00V"


def test_protection_latches_until_cleared(keysight: ScpiInstrument) -> None:
    stage = keysight.stage
    keysight.handle("VOLT 20;:CURR 1;:VOLT:PROT 10;:OUTP ON")
    stage.step(0.1, None, 0.0)
    assert keysight.handle("OUTP?") == "0"
    assert keysight.handle("STAT:QUES:COND?") == "1"
    assert keysight.handle("STAT:QUES?") == "1" and keysight.handle("STAT:QUES?") == "0"
    keysight.handle("VOLT:PROT 30;:OUTP ON")
    assert drain(keysight) == [-221]
    keysight.handle("OUTP:PROT:CLE;:OUTP ON")
    assert keysight.handle("OUTP?;STAT:QUES:COND?") == "1;0"


_alphabet = st.sampled_from(list("VOLTCURMEASPROTOUPSYSTERRvoltcur:;?*, 0123456789.eE+-kmVAW\"'#@()\t"))


@settings(max_examples=400, deadline=None)
@given(st.text(_alphabet, max_size=60))
def test_fuzz_never_crashes_and_only_queues_standard_errors(message: str) -> None:
    instrument = ScpiInstrument(Plant([Port("p1")]), "p1", "keysight_rp7900")
    reply = instrument.handle(message)
    assert reply is None or isinstance(reply, str)
    for code, _ in instrument.errors:
        assert code in ERROR_TEXT and code != -300, (message, list(instrument.errors))
    assert instrument.stage.voltage_setpoint <= instrument.profile.rated.voltage * 1.02


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 950, allow_nan=False), st.sampled_from(["", "V", "mV", "kV"]))
def test_fuzz_set_and_read_back_round_trips(volts: float, unit: str) -> None:
    instrument = ScpiInstrument(Plant([Port("p1")]), "p1", "keysight_rp7900")
    scale = {"": 1.0, "V": 1.0, "mV": 1e-3, "kV": 1e3}[unit]
    instrument.handle(f"VOLT {volts / scale!r}{unit}")
    assert not instrument.errors
    assert float(instrument.handle("VOLT?") or "nan") == pytest.approx(volts, rel=1e-6, abs=1e-9)
