"""The access log: noted on the event loop, written by its thread in one write per batch."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator

import pytest
from smsgate import logs
from smsgate_api.access_log import AccessLog, logger


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    out = CountingStream()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def scope(query: bytes) -> dict[str, object]:
    return {
        "type": "http",
        "client": ("10.0.0.7", 50123),
        "method": "GET",
        "path": "/sendsms",
        "query_string": query,
        "http_version": "1.1",
    }


def test_requests_are_written_later_in_one_write_and_redacted(stream: CountingStream) -> None:
    access = AccessLog()
    for n in range(3):
        query = f"username=u&password=secret&phonenumber=10086&message=hi&id=m{n}".encode()
        access.note(scope(query), {"type": "http.response.start", "status": 200})
    assert stream.getvalue() == ""  # nothing written while the loop notes requests
    access.flush()
    lines = stream.getvalue().splitlines()
    assert stream.writes == 1
    assert lines == [
        f'smsgate.access 10.0.0.7:50123 - "GET /sendsms?username=***&password=***'
        f'&phonenumber=***&message=***&id=m{n} HTTP/1.1" 200'
        for n in range(3)
    ]


async def test_the_thread_writes_and_stop_writes_what_is_left(stream: CountingStream) -> None:
    access = AccessLog(interval=3600)  # the loop would not make lines before stop
    access.start()
    access.note(scope(b""), {"type": "http.response.start", "status": 404})
    access.stop()
    assert stream.getvalue() == 'smsgate.access 10.0.0.7:50123 - "GET /sendsms HTTP/1.1" 404\n'


def until_written(stream: CountingStream, lines: int) -> None:
    for _ in range(1000):
        if stream.getvalue().count("\n") >= lines:
            return
        time.sleep(0.01)
    raise AssertionError(f"{lines} lines not written: {stream.getvalue().count(chr(10))}")


async def test_lines_are_made_on_the_loop_a_chunk_a_turn_and_written_by_the_thread(
    stream: CountingStream,
) -> None:
    access = AccessLog(interval=0.01)
    access.start()
    try:
        for n in range(600):  # more than two chunks: made over several loop turns
            access.note(scope(f"id=m{n}".encode()), {"type": "http.response.start", "status": 200})
        # The loop must stay free to make the lines: wait in a thread.
        await asyncio.to_thread(until_written, stream, 600)
    finally:
        access.stop()
    lines = stream.getvalue().splitlines()
    assert lines == [
        f'smsgate.access 10.0.0.7:50123 - "GET /sendsms?id=m{n} HTTP/1.1" 200' for n in range(600)
    ]
    assert stream.writes == 3  # one write per chunk of 256 lines


def test_nothing_is_formatted_when_the_logger_is_off(stream: CountingStream) -> None:
    logger.setLevel(logging.WARNING)
    access = AccessLog()
    access.note(scope(b"password=x"), {"type": "http.response.start", "status": 200})
    access.flush()
    assert stream.getvalue() == ""


def test_no_secret_slips_through_a_kept_value(stream: CountingStream) -> None:
    # The formatter does not search access-log lines for secrets again: the mask must hold.
    handler = logger.handlers[-1]
    handler.setFormatter(logs.TextFormatter())
    access = AccessLog()
    query = b"id=x=password=hunter2&port=lte-1&password=hunter3"
    access.note(scope(query), {"type": "http.response.start", "status": 200})
    access.flush()
    line = stream.getvalue()
    assert "hunter" not in line
    assert "id=***&port=lte-1&password=***" in line


def test_a_broken_stream_is_reported_and_the_other_handlers_still_write(
    stream: CountingStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A handler whose stream was closed (a closed pipe; in the suite, a capture file left
    # on the root logger): logging's own handlers report it and go on, and so must we,
    # or the writer thread dies and every later request piles up in memory.
    broken = io.StringIO()
    broken.close()
    dead = logging.StreamHandler(broken)
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(dead, "handleError", reported.append)
    logger.handlers.insert(0, dead)
    try:
        access = AccessLog()
        access.note(scope(b"id=a"), {"type": "http.response.start", "status": 200})
        access.flush()
    finally:
        logger.removeHandler(dead)
    assert len(reported) == 1
    assert stream.getvalue() == 'smsgate.access 10.0.0.7:50123 - "GET /sendsms?id=a HTTP/1.1" 200\n'


def test_text_lines_read_exactly_as_the_text_formatter_writes_them(
    stream: CountingStream,
) -> None:
    # The writer formats TextFormatter's lines itself (no LogRecord each): they must not
    # differ by a byte from what the formatter makes of the same request.
    formatter = logs.TextFormatter()
    logger.handlers[-1].setFormatter(formatter)
    access = AccessLog()
    times = [
        1_780_000_000.0,
        1_780_000_000.0009,
        1_780_000_000.999,
        1_780_000_001.5,
        1_780_003_599.25,
    ]
    expected = []
    for n, when in enumerate(times):
        query = f"username=u&password=p&Port=lte-{n}&p%61ssword=x&message=a+b".encode()
        access._entries.append((when, ("10.0.0.7", 50123), "GET", "/sendsms", query, "1.1", 200))
        message = (
            f'10.0.0.7:50123 - "GET /sendsms?username=***&password=***&Port=lte-{n}'
            f'&p%61ssword=***&message=*** HTTP/1.1" 200'
        )
        record = logging.makeLogRecord(
            {"name": "smsgate.access", "levelno": logging.INFO, "levelname": "INFO", "msg": message}
        )
        record.created = when
        record.msecs = int((when - int(when)) * 1000)
        expected.append(formatter.format(record))
    access._entries.append((times[0], None, "POST", "/sendsms", b"", "1.0", 415))
    record = logging.makeLogRecord(
        {
            "name": "smsgate.access",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": '- - "POST /sendsms HTTP/1.0" 415',
        }
    )
    record.created, record.msecs = times[0], 0
    expected.append(formatter.format(record))
    access.flush()
    assert stream.getvalue().splitlines() == expected
    assert stream.writes == 1
