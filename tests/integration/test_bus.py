"""The bus against a real nats-server: provisioning, dedupe, a full queue, a cluster."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
import pytest
from nats.errors import NoRespondersError
from nats.js.api import RetentionPolicy
from nats.js.errors import APIError
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedCluster

from tests.conftest import Bus


async def test_provision_is_idempotent(nats_bus: Bus) -> None:
    await bus.provision(nats_bus.js, nats_bus.config)
    names = sorted(info.config.name or "" for info in await nats_bus.js.streams_info())
    assert names == sorted(
        [
            "SMS_SEND",
            "SMS_EVENTS",
            "SMS_DEAD",
            "KV_sms_ports",
            "KV_sms_messages",
            "KV_sms_inbound_parts",
            "KV_sms_sending",
            "KV_sms_agents",
            "KV_sms_reports",
        ]
    )
    info = await nats_bus.js.stream_info(subjects.SEND_STREAM)
    assert info.config.retention == RetentionPolicy.WORK_QUEUE


async def test_job_round_trip_and_dedupe(nats_bus: Bus) -> None:
    job = contracts.SendJob(id="m1", to="+15550100", text="hi", created=contracts.utcnow())
    headers = {"Nats-Msg-Id": job.id}
    first = await nats_bus.js.publish(subjects.SEND_ANY, contracts.encode(job), headers=headers)
    again = await nats_bus.js.publish(subjects.SEND_ANY, contracts.encode(job), headers=headers)
    assert again.duplicate
    assert not first.duplicate
    sub = await nats_bus.js.pull_subscribe(subjects.SEND_ANY, "t")
    [msg] = await sub.fetch(1, timeout=2)
    assert contracts.decode(msg.data, contracts.SendJob) == job


async def test_full_send_queue_refuses_new_work(nats_bus: Bus) -> None:
    small = msgspec.structs.replace(nats_bus.config, send_max_msgs=2)
    await bus.provision(nats_bus.js, small)
    for i in range(2):
        await nats_bus.js.publish(subjects.SEND_ANY, b"{}", headers={"Nats-Msg-Id": f"x{i}"})
    with pytest.raises(APIError, match="maximum messages exceeded"):
        await nats_bus.js.publish(subjects.SEND_ANY, b"{}", headers={"Nats-Msg-Id": "x3"})


async def test_three_node_cluster_with_replicas(tmp_path: Path) -> None:
    cluster = EmbeddedCluster(base_dir=tmp_path)
    cluster.start()
    try:
        config = NatsConfig(url=cluster.url, replicas=3)
        nc = await bus.connect(config)
        js = nc.jetstream()
        for _ in range(50):  # the meta leader takes a moment to be elected
            try:
                await bus.provision(js, config)
                break
            except (APIError, TimeoutError, NoRespondersError):
                await asyncio.sleep(0.2)
        info = await js.stream_info(subjects.SEND_STREAM)
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2
        await nc.close()
    finally:
        cluster.stop()


def keeps_per_message_ttls(nats_bus: Bus) -> bool:
    """Whether the server takes per-message TTLs (nats-server >= 2.11; DESIGN.md asks >= 2.10)."""
    version = nats_bus.nc.connected_server_version
    return (version.major, version.minor) >= (2, 11)


async def test_provision_lets_an_older_bucket_take_per_message_ttls(
    nats_bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    """A bucket made before per-message TTLs (older nats-py, `nats kv add`) is upgraded in
    place at start-up: its keys stay, and a removed key's marker then expires. A server
    older than 2.11 keeps the bucket as it was, and says so."""
    name = f"KV_{subjects.REPORTS_BUCKET}"
    old = (await nats_bus.js.stream_info(name)).config
    await nats_bus.js.delete_stream(name)
    await nats_bus.js.add_stream(old.evolve(allow_msg_ttl=False))
    assert not (await nats_bus.js.stream_info(name)).config.allow_msg_ttl
    await nats_bus.buckets.reports.put("s.i1.7", b"[]")

    with caplog.at_level(logging.INFO, logger="smsgate.bus"):
        buckets = await bus.provision(nats_bus.js, nats_bus.config)

    assert (await buckets.reports.get("s.i1.7")).value == b"[]"
    if not keeps_per_message_ttls(nats_bus):
        assert not (await nats_bus.js.stream_info(name)).config.allow_msg_ttl
        assert "KV bucket sms_reports: this nats-server keeps delete markers" in caplog.text
        return
    assert (await nats_bus.js.stream_info(name)).config.allow_msg_ttl
    removal = bus.removal() | {"Nats-TTL": "1s"}  # a delete whose marker expires soon
    await nats_bus.js.publish("$KV.sms_reports.s.i1.7", b"", headers=removal)
    async with asyncio.timeout(30):  # the marker goes too: the key costs the server nothing
        while (await nats_bus.js.stream_info(name)).state.messages:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def test_provision_leaves_a_bucket_with_per_message_ttls_as_it_is(nats_bus: Bus) -> None:
    before = await nats_bus.js.stream_info(f"KV_{subjects.SENDING_BUCKET}")
    if keeps_per_message_ttls(nats_bus):
        assert before.config.allow_msg_ttl
    await bus.provision(nats_bus.js, nats_bus.config)
    after = await nats_bus.js.stream_info(f"KV_{subjects.SENDING_BUCKET}")
    assert after.config == before.config
