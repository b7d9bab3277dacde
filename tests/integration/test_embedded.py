"""The embedded nats-server keeps JetStream data across a kill -9 and a restart."""

import socket
from pathlib import Path

import pytest
from smsgate import bus, embedded
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats, free_port


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


def test_a_cluster_that_cannot_start_leaves_no_node_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose port was taken meanwhile fails the start, and the nodes started
    before it are stopped: the caller never got a cluster it could stop."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [free_port(), free_port(), taken.getsockname()[1]]  # n3's client port is taken
    picks = iter(ports + [free_port() for _ in range(3)])
    monkeypatch.setattr(embedded, "free_port", lambda: next(picks))
    cluster = embedded.EmbeddedCluster(base_dir=tmp_path)
    try:
        with pytest.raises(embedded.EmbeddedNatsError):
            cluster.start(timeout=15)
        assert [node.running for node in cluster.nodes] == [False, False, False]
    finally:
        cluster.stop()
        taken.close()
