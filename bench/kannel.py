"""Kannel, the peer measured side by side: bearerbox + smsbox, with a fake or an AT SMSC.

The configuration is generated into the benchmark's temporary directory at run time.
`scripts/bench` installs Kannel (Debian `kannel`, `kannel-extras`) when it is missing.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Proc, free_port, spawn, wait_port

FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
USER = "bench"
PASSWORD = "benchpass"


def available() -> str | None:
    """None when Kannel can run here, else why not."""
    for binary in ("bearerbox", "smsbox"):
        if shutil.which(binary) is None:
            return f"{binary} not found (apt-get install kannel)"
    return None


@dataclass
class Kannel:
    """A running bearerbox + smsbox (+ fakesmsc); `sendsms_url` takes wrk's load."""

    directory: Path
    sendsms_port: int
    procs: list[Proc]

    def sendsms_url(self, to: str = "10086", text: str = "hello") -> str:
        return (
            f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms?"
            f"username={USER}&password={PASSWORD}&from=12345&to={to}&text={text}"
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def _config(directory: Path, smsc: str, *, log_level: int) -> tuple[str, int, int]:
    admin, box, sendsms = free_port(), free_port(), free_port()
    text = f"""
group = core
admin-port = {admin}
admin-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = {box}
log-file = "{directory}/bearerbox.log"
log-level = {log_level}
box-allow-ip = "127.0.0.1"
store-type = file
store-location = "{directory}/kannel.store"
dlr-storage = internal

group = smsbox
bearerbox-host = 127.0.0.1
sendsms-port = {sendsms}
log-file = "{directory}/smsbox.log"
log-level = {log_level}

group = sendsms-user
username = {USER}
password = {PASSWORD}
max-messages = 10
concatenation = true

{smsc}
"""
    return text, box, sendsms


def start(
    directory: Path,
    *,
    at_devices: dict[str, str] | None = None,
    log_level: int = 4,
) -> Kannel:
    """Start Kannel with a fake SMSC (fakesmsc), or one AT SMSC per device when given."""
    directory.mkdir(parents=True, exist_ok=True)
    fake_port = free_port()
    if at_devices:
        groups = [
            f"""
group = smsc
smsc = at
smsc-id = {name}
modemtype = sim
device = {device}
speed = 115200
sms-center = "+15550000000"
keepalive = 0
"""
            for name, device in at_devices.items()
        ]
        groups.append(
            """
group = modems
id = sim
name = "smsgate virtual modem"
detect-string = "SMSGATE"
init-string = "AT+CNMI=2,2,0,1,0"
speed = 115200
sendline-sleep = 0
"""
        )
        smsc = "\n".join(groups)
    else:
        smsc = f"""
group = smsc
smsc = fake
smsc-id = fake
port = {fake_port}
connect-allow-ip = 127.0.0.1
"""
    text, box_port, sendsms_port = _config(directory, smsc, log_level=log_level)
    conf = directory / "kannel.conf"
    conf.write_text(text)
    procs: list[Proc] = []
    kannel = Kannel(directory, sendsms_port, procs)
    try:
        procs.append(spawn("bearerbox", ["bearerbox", "-v", str(log_level), str(conf)], directory))
        wait_port(box_port)
        if not at_devices:
            # fakesmsc connects to bearerbox's fake SMSC port and takes what it sends.
            procs.append(
                spawn(
                    "fakesmsc",
                    [
                        str(FAKESMSC),
                        "-v",
                        str(log_level),
                        "-H",
                        "127.0.0.1",
                        "-r",
                        str(fake_port),
                        "-m",
                        "0",
                        "x y z",
                    ],
                    directory,
                )
            )
        procs.append(spawn("smsbox", ["smsbox", "-v", str(log_level), str(conf)], directory))
        wait_port(sendsms_port)
        time.sleep(1.0)  # the SMSC connects after smsbox is up
        for proc in procs:
            proc.alive()
    except BaseException:
        kannel.stop()
        raise
    return kannel
