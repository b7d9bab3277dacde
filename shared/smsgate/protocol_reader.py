"""A leaner reader of what nats-server sends, for a connection that gets many messages.

nats-py's parser tries a regular expression on its buffer for each message and deletes
each message from the front of a bytearray (moving the rest of the read down every time),
so a read carrying forty replies moves most of it forty times. This one finds each `MSG`
and `HMSG` control line with `bytes.find`, splits it, and slices the payload out of the
bytes as read; it hands each message to the client exactly as nats-py's does
(`_process_msg(sid, subject, reply, payload, headers)`). Every other operation (PING,
PONG, +OK, -ERR, INFO) is rare and left to nats-py's parser, which shares this one's
state, so either can carry on where the other stopped.
"""

from __future__ import annotations

import logging
from typing import Any

from nats.aio.client import Client
from nats.errors import ProtocolError
from nats.protocol.parser import (
    AWAITING_CONTROL_LINE,
    AWAITING_MSG_PAYLOAD,
    Parser,
)

log = logging.getLogger("smsgate.protocol_reader")

_CRLF = b"\r\n"


class LeanParser(Parser):
    """nats-py's `Parser` with `MSG` and `HMSG` read by slicing."""

    async def parse(self, data: bytes = b"") -> None:
        held = self.buf  # a reset (a reconnect) replaces it: then this read is stale
        if held:
            held += data
            if self.state == AWAITING_MSG_PAYLOAD and len(held) < self.needed + 2:
                return  # a large message still arriving: gathered without copies
            buf = bytes(held)
            del held[:]
        else:
            buf = data
        pos, end = 0, len(buf)
        nc: Any = self.nc
        while pos < end:
            if self.state == AWAITING_MSG_PAYLOAD:
                needed = self.needed
                if end - pos < needed + 2:
                    break
                headers_size = self.header_needed
                if headers_size:
                    headers: bytes | None = buf[pos : pos + headers_size]
                    self.header_needed = 0
                else:
                    headers = None
                payload = buf[pos + headers_size : pos + needed]
                pos += needed + 2
                self.state = AWAITING_CONTROL_LINE
                arg = self.msg_arg
                await nc._process_msg(arg["sid"], arg["subject"], arg["reply"], payload, headers)
                if self.buf is not held:
                    return
                continue
            eol = buf.find(_CRLF, pos)
            if eol < 0:
                break
            if buf.startswith(b"MSG ", pos):
                self._message_line(buf[pos + 4 : eol].split(), 3)
            elif buf.startswith(b"HMSG ", pos):
                self._message_line(buf[pos + 5 : eol].split(), 4)
            else:
                # Another operation: nats-py's parser reads on from here (and may read
                # the rest of this buffer itself).
                held += buf[pos:]
                await super().parse()
                return
            pos = eol + 2
        if pos < end:
            held += buf[pos:]

    def _message_line(self, args: list[bytes], least: int) -> None:
        """`MSG <subject> <sid> [reply] <size>` (least 3 fields) or `HMSG <subject> <sid>
        [reply] <header size> <size>` (least 4) into the parser's state."""
        count = len(args)
        if count not in (least, least + 1):
            raise ProtocolError("nats: malformed MSG")
        try:
            sid = int(args[1])
            needed = int(args[-1])
            header_needed = int(args[-2]) if least == 4 else 0
        except ValueError:
            raise ProtocolError("nats: malformed MSG") from None
        arg = self.msg_arg
        arg["subject"] = args[0]
        arg["sid"] = sid
        arg["reply"] = args[2] if count > least else b""
        self.needed = needed
        self.header_needed = header_needed
        self.state = AWAITING_MSG_PAYLOAD


def read_lean(client: Client) -> bool:
    """Have `client` read with `LeanParser`; False where its nats-py has no parser of the
    kind this one extends (then it keeps its own)."""
    if not isinstance(getattr(client, "_ps", None), Parser):
        log.info("nats-py without the parser this extends: its own reads the connection")
        return False
    client._ps = LeanParser(client)
    return True
