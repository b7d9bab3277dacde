"""The embedded nats-server keeps JetStream data across a kill -9 and a restart."""

from pathlib import Path

from smsgate import bus
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats


async def test_restart_on_same_store_keeps_queued_work(tmp_path: Path) -> None:
    server = EmbeddedNats(store_dir=tmp_path)
    await server.astart()
    port = server.port
    try:
        config = NatsConfig(url=server.url)
        nc = await bus.connect(config)
        js = nc.jetstream()
        await bus.provision(js, config)
        await js.publish("sms.send.any", b"job-1")
        await nc.close()
        server.kill()
        assert not server.running
        await server.astart()
        assert server.port == port  # clients reconnect to the same address
        nc = await bus.connect(config)
        info = await nc.jetstream().stream_info("SMS_SEND")
        assert info.state.messages == 1
        await nc.close()
    finally:
        await server.astop()
