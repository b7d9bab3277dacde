"""Pure pieces of the simulator: command-line parsing, storage slots, identities, profiles."""

from __future__ import annotations

import random
import typing

import pytest
from smsgate.config import ConfigError, SimConfig
from smsgate_sim.atcommand import (
    ErrorAnswer,
    Op,
    ParsedCommand,
    int_arg,
    parse_command,
    split_args,
)
from smsgate_sim.faults import Faults, FaultUpdate, garbage
from smsgate_sim.network import digits, pick
from smsgate_sim.profiles import PROFILES, profile
from smsgate_sim.simulator import Simulator, identity, luhn
from smsgate_sim.storage import Memory, Stat, tpdu_length


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("AT", ParsedCommand("", Op.EXEC)),
        ("at+csq", ParsedCommand("+CSQ", Op.EXEC)),
        ("AT+CPIN?", ParsedCommand("+CPIN", Op.READ)),
        ("AT+CNMI=?", ParsedCommand("+CNMI", Op.TEST)),
        ('AT+CPMS="SM","SM"', ParsedCommand("+CPMS", Op.SET, '"SM","SM"')),
        ("AT^ICCID?", ParsedCommand("^ICCID", Op.READ)),
        ("ATE0", ParsedCommand("E", Op.SET, "0")),
        ("ATE", ParsedCommand("E", Op.EXEC)),
        ("ATZ", ParsedCommand("Z", Op.EXEC)),
        ("AT&F", ParsedCommand("&F", Op.EXEC)),
        ("ATS0=0", ParsedCommand("S", Op.SET, "0=0")),
        ("\x1a\x1b\nAT+CMGF=0", ParsedCommand("+CMGF", Op.SET, "0")),  # junk before AT is skipped
        ("  at+cmgl=4  ", ParsedCommand("+CMGL", Op.SET, "4")),
    ],
)
def test_parse_command(line: str, expected: ParsedCommand) -> None:
    assert parse_command(line) == expected


def test_lines_without_at_are_not_commands() -> None:
    assert parse_command("hello") is None
    assert parse_command("") is None


def test_split_args() -> None:
    assert split_args('1,"*100#",15') == ["1", "*100#", "15"]
    assert split_args('"a,b",,3') == ["a,b", None, "3"]
    assert split_args('""') == [""]
    with pytest.raises(ErrorAnswer):
        split_args('"open')


def test_int_arg() -> None:
    args = split_args("2,,9")
    assert int_arg(args, 0, 0, 3) == 2
    assert int_arg(args, 1, 0, 3, default=1) == 1
    assert int_arg(args, 5, 0, 3, default=0) == 0
    for index in (1, 2):
        with pytest.raises(ErrorAnswer):
            int_arg(args, index, 0, 3)


def test_memory_slots() -> None:
    memory = Memory("SM", 3, first_index=0)
    assert [memory.store(f"00{i}", Stat.REC_UNREAD) for i in range(4)] == [0, 1, 2, None]
    assert memory.full
    memory.delete(1)
    assert memory.store("new", Stat.REC_READ) == 1  # the lowest free slot
    assert [i for i, _ in memory.listing(Stat.REC_READ)] == [1]
    assert [i for i, _ in memory.listing(4)] == [0, 1, 2]
    memory.delete_by_flag(1)
    assert [i for i, _ in memory.listing(4)] == [0, 2]
    memory.delete_by_flag(4)
    assert memory.used == 0
    assert memory.in_range(2)
    assert not memory.in_range(3)


def test_tpdu_length_excludes_the_smsc_field() -> None:
    assert tpdu_length("0011000B916407281553F80000AA0AE8329BFD4697D9EC37") == 23
    # ../shared/testdata/pdu_vectors.json, python-gsmmodem's "Test2" SMS-DELIVER
    assert tpdu_length("06917228195339040B917228214365F700003130805120618005D4F29C2E03") == 24


def test_luhn_and_identity() -> None:
    assert luhn("49015420323751") == "490154203237518"  # the IMEI example of 3GPP TS 23.003
    sim, imei = identity(SimConfig(msisdn_base="+4915550"), 7)
    assert sim.msisdn == "+4915550007"
    assert (len(sim.imsi), sim.imsi[:5]) == (15, "00101")
    assert (len(sim.iccid), len(imei)) == (19, 15)
    assert luhn(sim.iccid[:-1]) == sim.iccid
    assert luhn(imei[:-1]) == imei


def test_profiles_match_the_config_schema() -> None:
    annotation = typing.get_type_hints(SimConfig)["profile"]
    assert set(typing.get_args(annotation)) == set(PROFILES)
    with pytest.raises(ValueError, match="unknown modem profile"):
        profile("nokia")


def test_counted_send_failures_run_out() -> None:
    faults = Faults(send_error=38, send_error_count=2)
    rng = random.Random(1)
    assert [faults.send_fails(rng) for _ in range(3)] == [38, 38, None]


def test_fault_update_names_only_what_it_sets() -> None:
    assert FaultUpdate(hung=True, signal=0).changes() == {"hung": True, "signal": 0}


def test_garbage_has_no_line_ends() -> None:
    noise = garbage(random.Random(5), 500)
    assert len(noise) == 500
    assert b"\r" not in noise
    assert b"\n" not in noise


def test_numbers_and_delays() -> None:
    assert digits("+1 (555) 010-0001") == "15550100001"
    rng = random.Random(2)
    assert pick(1.5, rng) == 1.5
    assert pick((2.0, 2.0), rng) == 2.0
    assert all(1.0 <= pick((1.0, 3.0), rng) <= 3.0 for _ in range(100))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"part_time": (3.0, 1.0)}, "sim.part_time"),
        ({"profiles": {"lte-99": "huawei"}}, "no such ports"),
        ({"prefix": "lte."}, "sim.prefix"),
    ],
)
def test_simulator_rejects_impossible_config(changes: dict[str, object], message: str) -> None:
    config = SimConfig(**changes)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        Simulator(config)
