"""`scripts/bench [NAME [OPTIONS]]`: run one benchmark by name, or all of them in order."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "api": "bench_api",  # 1 and 0 (Kannel sendsms)
    "farm": "bench_farm",  # 2 and 6 (cost per part and per port)
    "latency": "bench_latency",  # 3 and 4
    "callback": "bench_callback",  # 5
    "kannel-at": "bench_kannel_at",  # 0 and 2 (one modem vs Kannel's AT driver)
    "history": "bench_history",  # 7 (the message history at 1,000,000 messages)
    "front": "bench_front",  # 1 as deployed: Kannel run.sh, smsgate api, smsgate dev, interleaved
    "scale": "bench_scale",  # 8: 3-node cluster, replicas = 3, many TCP modems and agents
    "soak": "bench_soak",  # 9: the whole farm for 30 minutes at half its capacity
    "bus-keys": "bench_bus_keys",  # 9c: what one KV key costs nats-server in memory
    "kv-batch": "bench_kv_batch",  # 3b: the ledger's writes, one by one or atomic batches
}


def main() -> None:
    name, *rest = sys.argv[1:] or ["all"]
    if name in ("-h", "--help"):
        print(__doc__)
        print("benchmarks:", ", ".join(BENCHMARKS), "or all")
        return
    names = list(BENCHMARKS) if name == "all" else [name]
    for each in names:
        if each not in BENCHMARKS:
            raise SystemExit(f"no benchmark {each!r}; choose from {', '.join(BENCHMARKS)}")
        module = importlib.import_module(f"bench.{BENCHMARKS[each]}")
        print(f"=== {each} ===", flush=True)
        module.main(rest if name != "all" else [])


if __name__ == "__main__":
    main()
