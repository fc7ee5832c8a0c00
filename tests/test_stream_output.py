"""The stream app's batches: topics named for compression get batches with that codec,
which read back to the same records."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import DefaultRecordBatch

from stream_app.output import CODECS, Output


def _records(values: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"course-%d" % (i % 3), v) for i, v in enumerate(values)]


@pytest.mark.parametrize("codec", ["zstd", "lz4", "gzip", "snappy"])
def test_a_compressed_topic_gets_batches_with_its_codec_that_read_back(codec):
    out = Output(app=None, compress={"enriched": codec}, batch_bytes=512 * 1024)
    values = [b'{"event_id":"%032d","payload":"{\\"position\\":%d}"}' % (i, i) for i in range(500)]
    batch = out._new_batch("enriched")
    for key, value in _records(values):
        assert batch.append(timestamp=None, key=key, value=value, headers=[("raw_p", b"1")]) is not None
    buf = bytes(batch._build())
    read = DefaultRecordBatch(buf)
    assert read.compression_type == CODECS[codec]
    got = [(r.key, r.value, list(r.headers)) for r in read]
    assert got == [(k, v, [("raw_p", b"1")]) for k, v in _records(values)]
    # repetitive JSON, as enriched events are: the batch is far smaller than its records
    assert len(buf) < sum(len(v) for v in values) / 3


def test_none_leaves_the_topic_to_the_producers_own_batches():
    out = Output(app=None, compress={"enriched": "none", "aggregates": "zstd"})
    assert "enriched" not in out._codecs and out._codecs["aggregates"] == CODECS["zstd"]


def test_enriched_records_are_arrays_up_to_the_bound_with_a_larger_event_alone():
    import msgspec

    from edxstream.core.records import enriched_records

    encoded = [
        msgspec.json.encode({"event_id": str(i), "payload": "x" * n}) for i, n in enumerate([10, 20, 30, 500, 10, 10])
    ]
    got = enriched_records(encoded, max_bytes=100)
    # in order, nothing lost or repeated, each within the bound unless one event is larger
    assert [e for v in got for e in msgspec.json.decode(v)] == [msgspec.json.decode(e) for e in encoded]
    assert [len(msgspec.json.decode(v)) for v in got] == [2, 1, 1, 2]
    assert all(len(v) <= 100 + 2 for v in got if len(msgspec.json.decode(v)) > 1)
    assert enriched_records(encoded[:1]) == [b"[" + encoded[0] + b"]"]
