"""The `Simulator`: N virtual modems on ptys or TCP ports, a radio network, a control interface."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import msgspec
from smsgate.config import ConfigError, SimConfig
from smsgate.pdu import Alphabet
from smsgate.subjects import check_port_name

from .faults import FaultUpdate
from .modem import SimCard, VirtualModem
from .network import Network, Order, digits
from .profiles import profile
from .stats import SentPart
from .transport import Endpoint, PtyEndpoint, TcpEndpoint

log = logging.getLogger("smsgate.sim")
_USB_DROP = 0.1  # seconds from AT+CFUN=1,1 to the device vanishing, with reset_unplugs


class Injected(msgspec.Struct):
    """Where an injected SMS went and in how many parts."""

    port: str
    parts: int


def luhn(body: str) -> str:
    """`body` with its Luhn check digit appended (IMEI and ICCID carry one)."""
    total = 0
    for i, char in enumerate(reversed(body)):
        value = int(char) * (2 if i % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str(-total % 10)


def identity(config: SimConfig, index: int) -> tuple[SimCard, str]:
    """The SIM and the IMEI of port `index`, derived from its number so they are stable."""
    msisdn = f"{config.msisdn_base}{index:03d}"
    number = digits(msisdn)
    imsi = config.mcc_mnc + number[-(15 - len(config.mcc_mnc)) :].zfill(15 - len(config.mcc_mnc))
    iccid = luhn("8901" + number[-14:].zfill(14))
    imei = luhn("35" + "690000" + number[-6:].zfill(6))
    return SimCard(msisdn=msisdn, imsi=imsi, iccid=iccid, pin=config.pin), imei


def _check(config: SimConfig) -> None:
    for field in ("part_time", "report_delay", "delivery_delay", "ussd_delay"):
        span = getattr(config, field)
        low, high = span if isinstance(span, tuple) else (span, span)
        if not 0 <= low <= high:
            raise ConfigError(f"sim.{field}: need 0 <= min <= max, got {span!r}")
    names = {f"{config.prefix}{i}" for i in range(1, config.ports + 1)}
    unknown = sorted(set(config.profiles) - names)
    if unknown:
        raise ConfigError(f"sim.profiles: no such ports {unknown}")
    if config.ports:
        try:
            check_port_name(f"{config.prefix}1")
        except ValueError as exc:
            raise ConfigError(f"sim.prefix: {exc}") from None


def _raise_fd_limit(wanted: int) -> None:
    # Each pty port costs two descriptors here and one in the agent; lift the soft limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Simulator:
    """Virtual modems: `await start()`, open `devices`, `await stop()` (or `async with`)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        _check(self.config)
        self.control_url: str | None = None
        self._modems: dict[str, VirtualModem] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._network: Network | None = None
        self._directory: Path | None = None
        self._own_directory = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._control: object | None = None

    # ------------------------------------------------------------- life cycle

    async def start(self) -> None:
        config = self.config
        master = random.Random(config.seed)
        self._network = Network(config, random.Random(master.random()))
        if config.transport == "pty":
            _raise_fd_limit(3 * config.ports + 256)
            if config.device_dir:
                self._directory = Path(config.device_dir)
                self._directory.mkdir(parents=True, exist_ok=True)
            else:
                self._directory = Path(tempfile.mkdtemp(prefix="smsgate-sim-"))
                self._own_directory = True
        for index in range(1, config.ports + 1):
            name = f"{config.prefix}{index}"
            sim, imei = identity(config, index)
            modem = VirtualModem(
                name,
                sim=sim,
                imei=imei,
                profile=profile(config.profiles.get(name, config.profile)),
                network=self._network,
                config=config,
                rng=random.Random(master.random()),
                rssi=12 + (index * 7) % 20,
            )
            modem.faults.send_error = config.send_error
            modem.faults.send_error_rate = config.send_error_rate
            modem.faults.garbage_rate = config.garbage_rate
            modem.faults.urc_rate = config.urc_rate
            if config.reset_unplugs:
                modem.on_reset = self._reset_by_replug
            endpoint: Endpoint
            if self._directory is not None:
                endpoint = PtyEndpoint(name, self._directory, modem.feed)
            else:
                port = config.base_port + index - 1 if config.base_port else 0
                endpoint = TcpEndpoint(config.host, port, modem.feed)
            modem.output = endpoint.write
            self._network.attach(modem)
            self._modems[name] = modem
            self._endpoints[name] = endpoint
        try:
            for endpoint in self._endpoints.values():
                await endpoint.plug()
            for modem in self._modems.values():
                modem.boot(announce=False)
            self._write_map()
            if config.control:
                from .control import ControlServer

                server = ControlServer(self, config.control)
                self._control = server
                self.control_url = await server.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        from .control import ControlServer

        if isinstance(self._control, ControlServer):
            await self._control.stop()
        self._control = None
        for task in self._tasks:
            task.cancel()
        for name, modem in self._modems.items():
            modem.power_off()
            self._endpoints[name].unplug()
        if self._network is not None:
            self._network.close()
        if self.config.map_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.map_file)
        if self._own_directory and self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _write_map(self) -> None:
        if not self.config.map_file:
            return
        path = Path(self.config.map_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(self.devices, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    # ------------------------------------------------------------- looking

    @property
    def network(self) -> Network:
        if self._network is None:
            raise RuntimeError("the simulator is not started")
        return self._network

    @property
    def devices(self) -> dict[str, str]:
        """Port name -> what the agent opens (a stable pty link or `socket://host:port`)."""
        return {name: endpoint.device for name, endpoint in self._endpoints.items()}

    @property
    def numbers(self) -> dict[str, str]:
        """Port name -> the phone number of the SIM in it."""
        return {name: modem.sim.msisdn for name, modem in self._modems.items()}

    @property
    def modems(self) -> dict[str, VirtualModem]:
        return dict(self._modems)

    def modem(self, name: str) -> VirtualModem:
        try:
            return self._modems[name]
        except KeyError:
            raise KeyError(f"no port {name!r}") from None

    def endpoint(self, name: str) -> Endpoint:
        self.modem(name)
        return self._endpoints[name]

    def sent(self, port: str | None = None) -> list[SentPart]:
        """The sent log (parts the network accepted), oldest first, of one port or all."""
        modems = [self.modem(port)] if port else self._modems.values()
        parts = [part for modem in modems for part in modem.sent]
        parts.sort(key=lambda part: part.time)
        return parts

    # ------------------------------------------------------------- acting

    async def inject(
        self,
        text: str,
        *,
        sender: str,
        to_port: str | None = None,
        to_number: str | None = None,
        alphabet: Alphabet | None = None,
        order: Order = "normal",
    ) -> Injected:
        """An SMS from an outside number to a port (or a SIM's number), split into parts."""
        if (to_port is None) == (to_number is None):
            raise ValueError("give exactly one of to_port and to_number")
        if to_port is not None:
            modem = self.modem(to_port)
        else:
            assert to_number is not None
            found = self.network.modem_for(to_number)
            if found is None:
                raise KeyError(f"no SIM has the number {to_number!r}")
            modem = found
        parts = self.network.inject(modem, sender, text, alphabet=alphabet, order=order)
        return Injected(modem.name, parts)

    def set_fault(
        self, port: str | None, update: FaultUpdate | None = None, /, **changes: object
    ) -> None:
        """Change faults of one port (None: every port), by a FaultUpdate or keyword arguments."""
        if update is None:
            try:
                update = msgspec.convert(changes, FaultUpdate)
            except msgspec.ValidationError as exc:
                raise ValueError(str(exc)) from None
        for modem in self._targets(port):
            modem.set_faults(update)

    def clear_faults(self, port: str | None = None) -> None:
        for modem in self._targets(port):
            modem.clear_faults()

    def _targets(self, port: str | None) -> list[VirtualModem]:
        return [self.modem(port)] if port is not None else list(self._modems.values())

    async def unplug(self, port: str) -> None:
        """Pull the modem's cable: the device vanishes, the network holds its messages."""
        modem = self.modem(port)
        if not self._endpoints[port].plugged:
            return
        modem.stats.unplugs += 1
        modem.power_off()
        self._endpoints[port].unplug()

    async def replug(self, port: str, *, device_name: str | None = None) -> None:
        """Plug it back: the same device path (pty link or TCP port), the modem boots afresh.

        `device_name` (ptys only) brings it back under another link name in the same
        directory, as a USB re-enumeration turns ttyUSB2 into ttyUSB5.
        """
        modem, endpoint = self.modem(port), self._endpoints[port]
        if endpoint.plugged:
            return
        if device_name is not None:
            if not isinstance(endpoint, PtyEndpoint):
                raise ValueError(f"{port}: only a pty port can come back under another name")
            endpoint.link = endpoint.link.with_name(device_name)
        await endpoint.plug()
        self._write_map()
        modem.boot(announce=False)

    async def reset(self, port: str) -> None:
        """Power-cycle the modem (clears a hang); plugs it back in if it was unplugged."""
        if not self._endpoints[port].plugged:
            await self.replug(port)
        self.modem(port).reset()

    async def swap_sims(self, a: str, b: str) -> None:
        """Take the SIM cards out of two modems and put each into the other; both restart.

        A SIM carries its number, IMSI and ICCID (and its SMSC); the modem keeps its IMEI.
        """
        first, second = self.modem(a), self.modem(b)
        first.sim, second.sim = second.sim, first.sim
        first.smsc, second.smsc = second.smsc, first.smsc
        first.network.attach(first)
        second.network.attach(second)
        await self.reset(a)
        await self.reset(b)

    def _reset_by_replug(self, modem: VirtualModem) -> None:
        # A USB modem that restarts drops off the bus a moment later (its OK gets out
        # first; closing the pty at once would discard it) and enumerates again.
        async def come_back() -> None:
            await asyncio.sleep(_USB_DROP)
            self._endpoints[modem.name].unplug()
            modem.stats.unplugs += 1
            await asyncio.sleep(self.config.reset_time)
            await self.replug(modem.name)

        task = asyncio.get_running_loop().create_task(come_back())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def run_sim(config: SimConfig) -> None:
    """Run the simulator until cancelled (`smsgate sim`), logging where its devices are."""
    async with Simulator(config) as sim:
        log.info(
            "%d virtual modems on %s; control interface %s",
            len(sim.devices),
            config.transport,
            sim.control_url or "off",
        )
        for name, device in sim.devices.items():
            log.info("  %s  %s  %s", name, device, sim.numbers[name])
        if config.map_file:
            log.info("device map written to %s", config.map_file)
        await asyncio.Event().wait()
