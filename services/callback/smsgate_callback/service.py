"""`smsgate callback`: one worker per webhook, from the gateway-compatible url and the list."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import httpx
from nats.aio.client import Client
from smsgate import bus
from smsgate import metrics as metrics_endpoint
from smsgate.config import CallbackConfig, Config, ConfigError, Webhook

from smsgate_callback.delivery import Target
from smsgate_callback.metrics import CallbackMetrics, metrics
from smsgate_callback.render import GatewayStyle
from smsgate_callback.retry import BackoffPolicy
from smsgate_callback.webhook import Observer, WebhookSpec, WebhookWorker

log = logging.getLogger("smsgate.callback")

EventKind = Literal["result", "report", "inbound", "port"]
GATEWAY_WEBHOOK = "gateway"  # the name the `[callback] url` takes among the webhooks


def gateway_webhook(callback: CallbackConfig) -> Webhook | None:
    """The `[callback] url` with its three switches as a webhook; None when off."""
    switches: list[tuple[EventKind, bool]] = [
        ("inbound", callback.inbound),
        ("result", callback.results),
        ("report", callback.reports),
    ]
    events = [kind for kind, on in switches if on]
    if not callback.url or not events:
        return None
    return Webhook(
        name=GATEWAY_WEBHOOK,
        url=callback.url,
        format="gateway",
        events=events,
        secret=callback.secret,
        concurrency=callback.concurrency,
        ordered=callback.ordered,
        params=callback.params,
        extra=dict(callback.extra),
    )


def webhook_spec(callback: CallbackConfig, webhook: Webhook) -> WebhookSpec:
    """Resolve one webhook against the [callback] defaults; ValueError names the problem."""

    def pick(own: float | None, default: float) -> float:
        return default if own is None else own

    if not webhook.events:
        raise ValueError("events: empty; name at least one of result, report, inbound, port")
    if not webhook.ports:
        raise ValueError('ports: empty; use ["*"] for every port')
    target = Target(
        url=Target.parse_url(webhook.url),
        format=webhook.format,
        style=GatewayStyle.from_config(callback, params=webhook.params, extra=webhook.extra),
        secret=webhook.secret,
        headers=dict(webhook.headers),
        timeout=pick(webhook.timeout, callback.timeout),
    )
    spec = WebhookSpec(
        name=webhook.name,
        target=target,
        kinds=tuple(webhook.events),
        ports=tuple(webhook.ports),
        concurrency=webhook.concurrency,
        ordered=webhook.ordered,
        policy=BackoffPolicy(
            initial=pick(webhook.backoff_initial, callback.backoff_initial),
            maximum=pick(webhook.backoff_max, callback.backoff_max),
            max_age=pick(webhook.max_age, callback.max_age),
        ),
        start=webhook.start or callback.start,
        verify=callback.verify if webhook.verify is None else webhook.verify,
        ca_file=webhook.ca_file or callback.ca_file,
    )
    spec.filter_subjects()  # a bad port name fails here, at start-up, naming the webhook
    if spec.ca_file and not Path(spec.ca_file).is_file():
        raise ValueError(f"ca_file {spec.ca_file!r}: no such file")
    return spec


def webhook_specs(callback: CallbackConfig) -> list[WebhookSpec]:
    """Every webhook the config asks for: `gateway` first, then `[[callback.webhooks]]`."""
    gateway = gateway_webhook(callback)
    webhooks = ([gateway] if gateway else []) + list(callback.webhooks)
    names = [w.name for w in webhooks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"callback.webhooks: duplicate names {dupes} "
            f"({GATEWAY_WEBHOOK!r} is taken by [callback] url)"
        )
    specs = []
    for webhook in webhooks:
        where = "callback" if webhook.name == GATEWAY_WEBHOOK else f"webhook {webhook.name!r}"
        try:
            specs.append(webhook_spec(callback, webhook))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return specs


class CallbackService:
    """The webhook workers of one process, sharing a NATS connection."""

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        registry: CallbackMetrics = metrics,
        on_attempt: Observer | None = None,
    ) -> None:
        self.config = config
        self.specs = webhook_specs(config.callback)
        self._transport = transport
        self._registry = registry
        self._on_attempt = on_attempt

    def render(self) -> str:
        """This service's metrics in the Prometheus text format."""
        return self._registry.render()

    async def run(self, nc: Client, stop: asyncio.Event) -> None:
        """Run every worker on `nc` until `stop` is set; a crashing worker stops them all."""
        await bus.provision(nc.jetstream(), self.config.nats)
        workers = [
            WebhookWorker(
                spec,
                nc,
                transport=self._transport,
                registry=self._registry,
                on_attempt=self._on_attempt,
            )
            for spec in self.specs
        ]
        if not workers:
            log.warning("callback: no webhooks: set [callback] url or [[callback.webhooks]]")
        for spec in self.specs:
            log.info(
                "callback: webhook %s -> %s (%s, %s)",
                spec.name,
                spec.target.url.copy_with(query=None),
                spec.target.format,
                ",".join(spec.kinds),
            )
        done = asyncio.Event()

        async def supervise(worker: WebhookWorker) -> None:
            try:
                await worker.run(stop)
            except Exception:
                log.exception("callback: webhook %s failed; stopping", worker.spec.name)
                done.set()
                raise

        async def wait_stop() -> None:
            await stop.wait()
            done.set()

        tasks = [asyncio.create_task(supervise(worker)) for worker in workers]
        waiter = asyncio.create_task(wait_stop())
        try:
            await done.wait()
        finally:
            stop.set()
            waiter.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0]


def _install_signals(stop: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove


async def run_callback(
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_attempt: Observer | None = None,
) -> None:
    """Turn SMS_EVENTS into HTTP callbacks until `stop` is set (or SIGINT/SIGTERM without one)."""
    service = CallbackService(config, transport=transport, on_attempt=on_attempt)
    remove_signals: Callable[[], None] = lambda: None  # noqa: E731
    if stop is None:
        stop = asyncio.Event()
        remove_signals = _install_signals(stop)
    listen = config.callback.metrics_listen
    try:
        async with metrics_endpoint.serving(listen, "callback.metrics_listen", [service.render]):
            nc = await bus.connect_until(config.nats, stop, name=f"{config.nats.name}-callback")
            if nc is None:
                return
            try:
                await service.run(nc, stop)
            finally:
                await bus.close(nc)
    finally:
        remove_signals()
