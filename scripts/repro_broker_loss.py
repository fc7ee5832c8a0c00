"""Acknowledged and lost: produce numbered records (acks=all) to a Tansu broker on its s3
store, kill -9 the broker mid-stream, start it again, then read each partition back and
compare with every delivery report's (partition, offset).

    python scripts/repro_broker_loss.py [N] [KILL_AT_S] [RATE] [SIZE]   # 100000 4.7 10000 2000
    IDEMPOTENT=0 python scripts/repro_broker_loss.py ...               # edxstream's producers

With an idempotent producer (IDEMPOTENT=1, the default here) about one run in two loses
a batch: Tansu stores the producer's sequence number before the batch, so a broker
killed in between answers the re-sent batch DUPLICATE_SEQUENCE_NUMBER, which librdkafka
reports as delivered with no offset ("acked with no offset" below), and its records are
not in the partition (sometimes with a hole of their size in the offsets, when the
watermark had been written too). Without idempotence and with one request in flight the
re-sent batch is stored: no loss, at most a batch twice ("duplicates")."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edxstream.core.settings import load  # noqa: E402
from edxstream.ops import stack  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 60_000
KILL_AT = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
RATE = float(sys.argv[3]) if len(sys.argv) > 3 else 5000.0  # records/s
SIZE = int(sys.argv[4]) if len(sys.argv) > 4 else 200
PARTS = 4
IDEMPOTENT = os.environ.get("IDEMPOTENT", "1") == "1"

tmp = Path(tempfile.mkdtemp(prefix="repro-"))
port = stack.free_ports(1)[0]
boot = f"127.0.0.1:{port}"
store = stack.ObjectStore.at(tmp / "seaweedfs")
weed = stack.start_object_store(stack.weed_binary(), store, tmp / "seaweedfs.log")
binary = stack.tansu_binary(load())


def start():
    return stack.start_broker(binary, "127.0.0.1", port, tmp / "broker.log", stack.S3_STORAGE, store.broker_env())


broker = start()
topic = "repro.raw"
a = AdminClient({"bootstrap.servers": boot})
for f in a.create_topics([NewTopic(topic, PARTS, 1)]).values():
    f.result()
time.sleep(1)

acked = {}  # value -> (partition, offset)
errors = []


def report(err, msg):
    if err is None:
        o = msg.offset()
        acked[msg.value()] = (msg.partition(), -1 if o is None else o)
    else:
        errors.append(str(err))


p = Producer(
    {
        "bootstrap.servers": boot,
        "log_level": 0,
        "enable.idempotence": IDEMPOTENT,
        **({} if IDEMPOTENT else {"max.in.flight.requests.per.connection": 1}),
        "acks": "all",
        "linger.ms": 25,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 128 * 1024,
        "message.timeout.ms": 0,
        "on_delivery": report,
        "compression.type": "lz4",
    }
)
killed_at_acked = [None]


def killer():
    time.sleep(KILL_AT)
    killed_at_acked[0] = len(acked)
    broker.kill()
    broker.wait()
    print(f"killed broker with {len(acked)} acknowledged", flush=True)
    time.sleep(2)
    globals()["broker"] = start()
    print("restarted", flush=True)


threading.Thread(target=killer, daemon=True).start()
t0 = time.time()
for i in range(N):
    while True:
        try:
            p.produce(topic, b"%08d" % i + b"x" * SIZE, partition=i % PARTS)
            break
        except BufferError:
            p.poll(0.1)
    if i % 100 == 0:
        p.poll(0)
    if i % 500 == 0:
        ahead = i / RATE - (time.time() - t0)
        if ahead > 0:
            time.sleep(ahead)
print("remaining", p.flush(120), "errors", errors[:3], "acked", len(acked), "time", time.time() - t0)

c = Consumer(
    {"bootstrap.servers": boot, "group.id": "repro", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
)
got = defaultdict(dict)  # partition -> offset -> value
for part in range(PARTS):
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
    print(f"partition {part}: watermarks low={lo} high={hi}")
c.assign([TopicPartition(topic, q, 0) for q in range(PARTS)])
idle = time.time()
while time.time() - idle < 8:
    for m in c.consume(1000, 1.0):
        if m.error():
            continue
        idle = time.time()
        got[m.partition()][m.offset()] = m.value()
c.close()
by_value = {v: (pt, o) for pt, d in got.items() for o, v in d.items()}
missing = [v for v in acked if v not in by_value]
missing_neg = sum(1 for v in missing if acked[v][1] < 0)
print("missing whose report had no offset", missing_neg)
moved = [v for v in acked if v in by_value and by_value[v] != acked[v]]
for part in range(PARTS):
    offs = sorted(got[part])
    holes = [(a, b) for a, b in zip(offs, offs[1:], strict=False) if b != a + 1]
    print(f"partition {part}: holes in the offsets read {holes[:5]}")
    top = max((o for (pp, o) in acked.values() if pp == part), default=None)
    print(f"partition {part}: read {len(offs)} records, offsets {offs[:1]}..{offs[-1:]}, max acked offset {top}")
neg = [v for v in acked if acked[v][1] < 0]
print(f"acked with no offset (offset < 0): {len(neg)}")
print(
    f"acked {len(acked)}, read {len(by_value)}, acked but missing {len(missing)}, acked at another offset {len(moved)}"
)
if missing:
    ms = sorted(missing)
    print("missing first/last", ms[0][:8], ms[-1][:8], "acked offsets", acked[ms[0]], acked[ms[-1]])
if moved:
    v = sorted(moved)[0]
    print("example moved", v[:8], "acked", acked[v], "read", by_value[v])
dup = sum(1 for d in got.values() for _ in d) - len(set(v for d in got.values() for v in d.values()))
print("duplicates", dup)
broker.kill()
stack.stop_process(weed.pid, timeout=2)
print("tmp", tmp)
