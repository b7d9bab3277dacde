"""What a modem counts and logs, for tests and benchmarks to check."""

from __future__ import annotations

import msgspec


class ModemStats(msgspec.Struct, kw_only=True):
    """Counters of one modem since the simulator started."""

    bytes_received: int = 0  # from the TE, including what a hung or rebooting modem drops
    commands: int = 0  # command lines run
    pdus_received: int = 0  # PDUs given after a prompt (AT+CMGS / AT+CMGW), valid or not
    pdus_malformed: int = 0  # of those, answered +CMS ERROR: 304
    parts_sent: int = 0  # parts the network accepted (+CMGS: <mr>)
    send_failures: int = 0  # sends answered with +CMS ERROR
    inbound_delivered: int = 0  # SMS-DELIVER parts the network handed to this modem
    reports_delivered: int = 0  # status reports the network handed to this modem
    reports_discarded: int = 0  # of those, dropped because AT+CNMI ds=0
    acknowledged: int = 0  # +CMT/+CDS acknowledged with AT+CNMA (AT+CSMS=1)
    unacknowledged: int = 0  # +CMT/+CDS refused to the network for want of AT+CNMA
    ussd: int = 0  # USSD requests answered
    resets: int = 0
    unplugs: int = 0


class SentPart(msgspec.Struct, kw_only=True):
    """One part the network accepted from a modem (the sent log)."""

    time: float  # Unix time of the +CMGS answer
    pdu_time: float | None = None  # Unix time the PDU's first byte arrived after the prompt
    port: str
    sender: str  # the sending SIM's number
    to: str
    mr: int  # TP-MR, as in +CMGS: <mr>
    text: str
    reference: int | None = None  # concatenation reference, when the part is one of several
    total: int = 1
    sequence: int = 1
    status_report: bool = False  # TP-SRR was set


class NetworkStats(msgspec.Struct, kw_only=True):
    """Counters of the virtual radio network."""

    injected: int = 0  # messages injected from outside numbers
    injected_parts: int = 0
    delivered_to_sims: int = 0  # parts routed from one virtual SIM to another
    delivered_outside: int = 0  # parts "delivered" to numbers outside the simulator
    reports: int = 0  # status reports generated
    autoreplies: int = 0
    held: int = 0  # parts and reports waiting for a SIM to become reachable
