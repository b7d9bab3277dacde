"""Reading nats-server's heap profile: live bytes by what they are for, scaled up from
the sampled objects the text profile counts."""

from __future__ import annotations

import math

from bench.bus_memory import heap_owners

SERVER = "github.com/nats-io/nats-server/v2/server"
PROFILE = f"""heap profile: 3: 4195328 [9: 9000000] @ heap/1048576
1: 4194304 [1: 4194304] @ 0x1 0x2
#\t0x1\t{SERVER}.init.func9+0x19\t{SERVER}/filestore.go:1066
#\t0x2\t{SERVER}.getMsgBlockBuf+0x9d\t{SERVER}/filestore.go:1085

2: 1024 [4: 2048] @ 0x3 0x4
#\t0x3\truntime.mallocgc+0x104\truntime/malloc.go:1
#\t0x4\t{SERVER}/stree.newLeaf[...]+0x24\t{SERVER}/stree/leaf.go:30

0: 0 [5: 5000] @ 0x5
#\t0x5\t{SERVER}.(*Server).HandleVarz+0x2ea\t{SERVER}/monitor.go:2075

# runtime.MemStats
# HeapAlloc = 5000000
"""


def test_live_bytes_are_told_by_what_they_are_for_and_scaled_by_the_sampling() -> None:
    owners = dict(heap_owners(PROFILE))
    rate = 1048576 / 2
    # A 4 MiB buffer is always sampled; two 512 B leaves stand for ~1,000 times as many.
    assert owners["block buffers"] == int(4194304 / (1 - math.exp(-4194304 / rate)))
    assert owners["subject index"] == int(1024 / (1 - math.exp(-512 / rate)))
    assert owners["subject index"] > 1000 * 1024
    assert "(*Server).HandleVarz" not in owners  # nothing of it is live


def test_the_largest_owner_comes_first() -> None:
    assert [name for name, _ in heap_owners(PROFILE)] == ["block buffers", "subject index"]
