"""Partitioned Parquet whose keys are top-level string columns: each record's
JSON is parsed once, into the Parquet rows, and the keys are read from them.
What a user sees must be what routing each record from its JSON gives: the
same objects under the same prefixes, the same error output with the same
reasons, nothing lost when the daemon is killed, and the records given back
whole to the error output when the destination gives up."""

import base64
import json
import os
import random
import time

from conftest import s3_store_yaml
from harness import Producers, read_objects, records_in, wait_until

PREFIX = "clicks/country=!{partitionKeyFromQuery:country}/device=!{partitionKeyFromQuery:device}/!{timestamp:yyyy/MM/dd/HH}/"


def stream(bucket, shards=2, retry=3600, extra_columns=""):
    return f"""streams:
  lake:
    shards: {shards}
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    retry_duration_secs: {retry}
    encoding:
      format: parquet
      compression: zstd
      schema:
        - {{ name: id, type: string, nullable: false }}
        - {{ name: country, type: string }}
        - {{ name: device, type: string }}
        - {{ name: n, type: int64 }}
{extra_columns}    dynamic_partitioning:
      keys: {{ country: .country, device: .device }}
    destination:
      type: s3
      bucket: {bucket}
      prefix: "{PREFIX}"
      error_output_prefix: "errors/!{{firehose:error-output-type}}/"
"""


def parquet_rows(objs):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return [(k, row) for k, b in objs.items() for row in pq.read_table(pa.BufferReader(b)).to_pylist()]


COUNTRIES, DEVICES = ["US", "DE", "São Paulo"], ["ios", "android"]

# Each odd record, and the error output type and reason routing it from its
# JSON gives.
ODD = [
    (b"not json", "partitioning-failed", "record is not JSON"),
    (b'{"id": "o1", "device": "ios"}', "partitioning-failed", "partition key `country` (`.country`) yields null"),
    (b'{"id": "o2", "country": null, "device": "ios"}', "partitioning-failed", "yields null"),
    (b'{"id": "o3", "country": "a/b", "device": "ios"}', "partitioning-failed", "cannot be part of an object key"),
    (b'{"id": "o4", "country": "US", "device": "ios", "n": "seven"}', "format-conversion-failed", "does not fit the schema"),
    (b'{"id": "o5", "country": 7, "device": "ios"}', "format-conversion-failed", "does not fit the schema"),
    (b'{"country": "US", "device": "ios"}', "format-conversion-failed", "does not fit the schema"),
]


def test_rows_go_under_their_keys_and_odd_records_to_the_error_output_as_before(hydrant_factory, garage, bucket):
    h = hydrant_factory(s3_store_yaml(garage) + stream(bucket)).start()
    good = [{"id": f"g{i}", "country": COUNTRIES[i % 3], "device": DEVICES[i % 2], "n": i} for i in range(6000)]
    records = [json.dumps(r, ensure_ascii=i % 2 == 0).encode() for i, r in enumerate(good)]
    for k, (odd, _, _) in enumerate(ODD):
        records.insert(k * 700 + 11, odd)
    fh = h.firehose()
    for i in range(0, len(records), 500):
        assert fh.put_record_batch(DeliveryStreamName="lake", Records=[{"Data": d} for d in records[i:i + 500]])["FailedPutCount"] == 0
    s3 = garage.s3()

    def delivered():
        rows = parquet_rows(read_objects(s3, bucket, "clicks/"))
        return rows if len(rows) >= len(good) else None

    rows = wait_until(delivered, timeout=60, what=f"{len(good)} Parquet rows")
    assert sorted(r["id"] for _, r in rows) == sorted(r["id"] for r in good)
    hour = time.strftime("%Y/%m/%d/", time.gmtime())
    for key, row in rows:
        assert key.startswith(f"clicks/country={row['country']}/device={row['device']}/{hour}"), (key, row)
        assert row["n"] == int(row["id"][1:])
    assert len({k.rsplit("/", 1)[0] for k, _ in rows}) == 6
    assert "each record's JSON is parsed once" in h.logs()

    errs = wait_until(lambda: (lambda x: x if len(x) >= len(ODD) else None)(records_in(read_objects(s3, bucket, "errors/"))),
                      timeout=30, what=f"{len(ODD)} error output records")
    got = {base64.b64decode(x["rawData"]): x for x in map(json.loads, errs)}
    assert sorted(got) == sorted(o for o, _, _ in ODD)
    for odd, code, reason in ODD:
        assert got[odd]["errorCode"] == code, (odd, got[odd])
        assert reason in got[odd]["errorMessage"], (odd, got[odd])
    assert h.metric("error_output_records", stream="lake") == len(ODD)


def test_a_read_gathers_records_as_configured(hydrant_factory, garage, bucket):
    """`read_records_min` and `read_wait_ms`: a few records wait for the
    first of them to have waited 4 s before they are read, though the
    buffering interval is 1 s; then they arrive."""
    cfg = stream(bucket, shards=1).replace(
        "      keys: { country: .country, device: .device }\n",
        "      keys: { country: .country, device: .device }\n      read_records_min: 1000000\n      read_wait_ms: 4000\n",
    )
    h = hydrant_factory(s3_store_yaml(garage) + cfg).start()
    fh = h.firehose()
    recs = [{"Data": json.dumps({"id": f"w{i}", "country": "US", "device": "ios", "n": i}).encode()} for i in range(10)]
    put_at = time.monotonic()
    assert fh.put_record_batch(DeliveryStreamName="lake", Records=recs)["FailedPutCount"] == 0
    s3 = garage.s3()
    while time.monotonic() - put_at < 2.5:
        assert not read_objects(s3, bucket, "clicks/"), "delivered before the read wait was over"
        time.sleep(0.2)
    rows = wait_until(lambda: (lambda r: r if len(r) >= 10 else None)(parquet_rows(read_objects(s3, bucket, "clicks/"))),
                      timeout=30, what="10 Parquet rows")
    assert time.monotonic() - put_at >= 4.0
    assert sorted(r["id"] for _, r in rows) == sorted(f"w{i}" for i in range(10))
    assert "each record's JSON is parsed once" in h.logs()


def test_kill9_while_rows_are_held_loses_nothing_acknowledged(hydrant_factory, garage, bucket):
    """SIGKILL at random moments while producers send: the rows held in open
    partitions are only in memory, so every acknowledged record must still
    come from the log after each restart."""
    seed = int(os.environ.get("HYDRANT_SOAK_SEED", random.randrange(1 << 32)))
    print(f"\nkill -9 on the decoded path: seed={seed} (replay with HYDRANT_SOAK_SEED={seed})")
    rng = random.Random(seed)
    cfg = s3_store_yaml(garage) + "log: { segment_bytes: 1048576 }\n" + stream(bucket, shards=4).replace(
        "        - { name: n, type: int64 }\n", "        - { name: n, type: int64 }\n        - { name: pad, type: string }\n")
    h = hydrant_factory(cfg).start()
    fields = lambda x: {"country": COUNTRIES[hash(x) % 3], "device": DEVICES[hash(x) % 2], "n": len(x)}  # noqa: E731
    p = Producers(lambda: h.firehose(), stream="lake", threads=3, fields=fields).start()
    for _ in range(10):
        time.sleep(rng.uniform(0.1, 1.0))
        h.kill()
        time.sleep(rng.uniform(0.0, 0.2))
        h.start()
    time.sleep(1)
    p.stop()
    assert len(p.acked) > 1000, f"only {len(p.acked)} acknowledged"
    assert p.failed_calls > 0, "no call ever failed: the kills did not happen under load"
    s3 = garage.s3()

    def all_there():
        rows = parquet_rows(read_objects(s3, bucket, "clicks/"))
        ids = {r["id"] for _, r in rows}
        return rows if p.acked <= ids else None

    rows = wait_until(all_there, timeout=120, what=f"{len(p.acked)} acknowledged records delivered")
    for key, row in rows:
        assert key.startswith(f"clicks/country={row['country']}/device={row['device']}/"), (key, row)
    assert not read_objects(s3, bucket, "errors/")
    assert "each record's JSON is parsed once" in h.logs()
    assert h.terminate() == 0


def test_a_batch_given_up_on_goes_to_the_error_output_read_again_from_the_log(hydrant_factory, garage, bucket):
    """The batch of rows holds only its records' offsets: when the retry
    window closes, the records are read again from the log for the error
    output, whole and once, and those the format refused are not sent twice."""
    errors_bucket = bucket + "-err"
    garage.create_bucket(errors_bucket)
    cfg = s3_store_yaml(garage) + stream("no-such-bucket-hydrant", shards=1, retry=2) + (
        f"    error_output: {{ type: s3, bucket: {errors_bucket}, prefix: 'failed/!{{firehose:error-output-type}}/' }}\n")
    h = hydrant_factory(cfg).start()
    good = [json.dumps({"id": f"g{i}", "country": COUNTRIES[i % 3], "device": "web", "n": i}).encode() for i in range(300)]
    refused = [b'{"id": "r1", "country": "US", "device": "web", "n": "many"}']
    unrouted = [b'{"id": "u1", "device": "web"}']
    h.firehose().put_record_batch(DeliveryStreamName="lake", Records=[{"Data": d} for d in good[:100] + refused + unrouted + good[100:]])
    s3 = garage.s3()

    def rows_of(kind):
        return [json.loads(x) for x in records_in({k: v for k, v in read_objects(s3, errors_bucket).items() if f"/{kind}/" in k})]

    wait_until(lambda: len(rows_of("s3-failed")) >= len(good) or None, timeout=60, what="the s3-failed batches")
    failed = rows_of("s3-failed")
    assert sorted(base64.b64decode(r["rawData"]) for r in failed) == sorted(good)
    assert all("no-such-bucket-hydrant" in r["errorMessage"] and isinstance(r["offset"], int) for r in failed)
    assert [base64.b64decode(r["rawData"]) for r in rows_of("format-conversion-failed")] == refused
    assert [base64.b64decode(r["rawData"]) for r in rows_of("partitioning-failed")] == unrouted
    assert h.metric("error_output_records", stream="lake") == len(good) + 2
