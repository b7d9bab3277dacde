"""Fuzzing the decoders: random and mutated PDUs may fail only with PduError."""

import datetime
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from smsgate.pdu import (
    Concat,
    PduError,
    decode,
    decode_deliver,
    decode_status_report,
    decode_submit,
    encode_deliver,
    encode_status_report,
    encode_submit,
    tpdu_length,
)

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
ROUNDS = 100_000
Decoder = Callable[..., object]
DECODERS: tuple[Decoder, ...] = (
    decode,
    decode_deliver,
    decode_submit,
    decode_status_report,
    tpdu_length,
)


def _corpus() -> list[bytes]:
    vectors = json.loads((TESTDATA / "pdu_vectors.json").read_text(encoding="utf-8"))
    pdus = [bytes.fromhex(vector["pdu"]) for vector in vectors]
    moment = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    for part in encode_submit("+491701234567", "Grüße € " * 30, status_report=True):
        pdus.append(bytes.fromhex(part.pdu))
    for part in encode_submit("Alpha", "😀 wide" * 20, wide_reference=True, concat_reference=999):
        pdus.append(bytes.fromhex(part.pdu))
    concat = Concat(7, 2, 1, wide=True)
    pdus.append(bytes.fromhex(encode_deliver("+1555", "x", timestamp=moment, concat=concat)))
    report = encode_status_report(9, "+1555", timestamp=moment, discharge_time=moment, status=0x41)
    pdus.append(bytes.fromhex(report))
    return pdus


def _mutate(rng: random.Random, pdu: bytes) -> bytes:
    data = bytearray(pdu)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if not data or choice < 0.1:
            data.extend(rng.randbytes(rng.randint(1, 8)))
        elif choice < 0.45:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.6:
            # Length octets and flags sit in the first 40 octets; nudge them by small amounts.
            index = rng.randrange(min(len(data), 40))
            data[index] = (data[index] + rng.choice((-2, -1, 1, 2, 0x40, 0x80))) % 256
        elif choice < 0.75:
            del data[rng.randrange(len(data)) :]
        elif choice < 0.85:
            start = rng.randrange(len(data))
            del data[start : start + rng.randint(1, 6)]
        else:
            index = rng.randrange(len(data) + 1)
            data[index:index] = rng.randbytes(rng.randint(1, 6))
    return bytes(data)


def _hex(rng: random.Random, data: bytes) -> str:
    text = data.hex() if rng.random() < 0.5 else data.hex().upper()
    roll = rng.random()
    if roll < 0.01:
        return text[:-1]  # odd length
    if roll < 0.02 and text:
        index = rng.randrange(len(text))
        return text[:index] + rng.choice("gZ -x\n\x00é") + text[index + 1 :]
    return text


def test_decoders_raise_only_pdu_error() -> None:
    rng = random.Random(20240501)
    corpus = _corpus()
    decoded = refused = 0
    started = time.perf_counter()
    for round_ in range(ROUNDS):
        smsc_included = rng.random() < 0.7
        if round_ % 5 == 0:
            data = rng.randbytes(rng.randint(0, 180))
        else:
            source = rng.choice(corpus)
            if not smsc_included:
                source = source[1 + source[0] :]  # as modems that omit the SMSC field give it
            data = _mutate(rng, source)
        pdu = _hex(rng, data)
        # Mostly the dispatcher, which reaches every type's parser; sometimes a typed decoder.
        decoder = decode if rng.random() < 0.7 else rng.choice(DECODERS)
        try:
            decoder(pdu, smsc_included=smsc_included)
        except PduError:
            refused += 1
        except Exception as exc:  # pragma: no cover - the failure report
            raise AssertionError(
                f"{decoder.__name__}({pdu!r}, smsc_included={smsc_included}) raised {exc!r}"
            ) from exc
        else:
            decoded += 1
    elapsed = time.perf_counter() - started
    # Both outcomes must be common, or the mutations are not reaching the interesting code.
    assert decoded > ROUNDS // 10
    assert refused > ROUNDS // 10
    assert elapsed < 30, f"{ROUNDS} decodes took {elapsed:.1f}s"
