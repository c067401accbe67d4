"""The Kinesis Data Streams API, driven by real clients (boto3, the AWS CLI,
raw CBOR as the Java SDK sends it) against the real daemon: routing by the
partition key's MD5, reading back every record in order, every iterator
type, retention and tags, SIGKILL survival, Firehose reading a Kinesis
stream into Garage, and Kinesis's exceptions for bad input."""

import datetime
import hashlib
import json
import os
import random
import subprocess
import time
import urllib.request

import botocore.exceptions
import cbor2
import pytest

from conftest import s3_store_yaml
from harness import error_code
from harness import read_objects, records_in, wait_until

HASH_MAX = 2**128 - 1


def expected_shard(key: str, shards: int) -> str:
    h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
    step = 2**128 // shards
    return f"shardId-{min(h // step, shards - 1):012d}"


def create(k, name, shards):
    k.create_stream(StreamName=name, ShardCount=shards)
    k.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})


def read_shard(k, name, shard_id, kind="TRIM_HORIZON", limit=1000, **start):
    """Every record from `kind` to the end of the shard, and the last reply."""
    it = k.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType=kind, **start)["ShardIterator"]
    out = []
    while True:
        r = k.get_records(ShardIterator=it, Limit=limit)
        out.extend(r["Records"])
        it = r["NextShardIterator"]
        if not r["Records"] and r["MillisBehindLatest"] == 0:
            return out, r


def test_boto3_4_shards_10k_records_all_read_back_once_in_order_per_key(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    create(k, "events", 4)
    keys = [f"user-{i}" for i in range(300)]
    rng = random.Random(7)
    counters = {key: 0 for key in keys}
    sent = []
    for _ in range(20):
        batch = []
        for _ in range(500):
            key = rng.choice(keys)
            batch.append({"Data": json.dumps({"k": key, "n": counters[key]}).encode(), "PartitionKey": key})
            counters[key] += 1
        r = k.put_records(StreamName="events", Records=batch)
        assert r["FailedRecordCount"] == 0
        for rec, res in zip(batch, r["Records"]):
            assert res["ShardId"] == expected_shard(rec["PartitionKey"], 4)
            assert res["SequenceNumber"].isdigit()
            sent.append((rec["PartitionKey"], res["ShardId"], res["SequenceNumber"]))
    assert len(sent) == 10_000

    d = k.describe_stream(StreamName="events")["StreamDescription"]
    assert d["StreamStatus"] == "ACTIVE" and d["RetentionPeriodHours"] == 24
    assert [s["ShardId"] for s in d["Shards"]] == [f"shardId-{i:012d}" for i in range(4)]
    assert d["Shards"][0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert d["Shards"][1]["HashKeyRange"]["StartingHashKey"] == str(2**126)
    assert d["Shards"][3]["HashKeyRange"]["EndingHashKey"] == str(HASH_MAX)
    assert len(k.list_shards(StreamName="events")["Shards"]) == 4
    page = k.list_shards(StreamName="events", MaxResults=3)
    rest = k.list_shards(NextToken=page["NextToken"])
    assert [s["ShardId"] for s in page["Shards"] + rest["Shards"]] == [s["ShardId"] for s in d["Shards"]]
    assert k.describe_stream_summary(StreamName="events")["StreamDescriptionSummary"]["OpenShardCount"] == 4
    assert k.list_streams()["StreamNames"] == ["events"]

    got = {}
    for shard in d["Shards"]:
        records, last = read_shard(k, "events", shard["ShardId"])
        assert last["MillisBehindLatest"] == 0
        seqs = [int(r["SequenceNumber"]) for r in records]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "sequence numbers increase per shard"
        for r in records:
            body = json.loads(r["Data"])
            assert r["PartitionKey"] == body["k"]
            assert expected_shard(body["k"], 4) == shard["ShardId"]
            assert isinstance(r["ApproximateArrivalTimestamp"], datetime.datetime)
            got.setdefault(body["k"], []).append(body["n"])
    assert sum(len(v) for v in got.values()) == 10_000, "every record once"
    for key, ns in got.items():
        assert ns == list(range(counters[key])), f"{key} out of order or incomplete"
    assert {s for _, _, s in sent} == {
        r["SequenceNumber"] for shard in d["Shards"] for r in read_shard(k, "events", shard["ShardId"])[0]
    }
    assert h.metric("kinesis_incoming_records", stream="events") == 10_000
    assert h.metric("kinesis_outgoing_records", stream="events") >= 10_000


def test_iterator_types_start_where_they_should(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    create(k, "one", 1)
    shard = "shardId-000000000000"
    seqs = []
    for i in range(50):
        seqs.append(k.put_record(StreamName="one", Data=str(i).encode(), PartitionKey="p")["SequenceNumber"])
    time.sleep(1.1)
    middle = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.1)
    for i in range(50, 100):
        seqs.append(k.put_record(StreamName="one", Data=str(i).encode(), PartitionKey="p")["SequenceNumber"])

    def first(kind, **start):
        records, _ = read_shard(k, "one", shard, kind=kind, **start)
        return [int(r["Data"]) for r in records]

    assert first("TRIM_HORIZON") == list(range(100))
    assert first("AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[10]) == list(range(10, 100))
    assert first("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[10]) == list(range(11, 100))
    assert first("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[99]) == []
    assert first("AT_TIMESTAMP", Timestamp=middle) == list(range(50, 100))
    assert first("AT_TIMESTAMP", Timestamp=middle - datetime.timedelta(hours=1)) == list(range(100))
    # LATEST: nothing now, then exactly what comes after.
    latest = k.get_shard_iterator(StreamName="one", ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    assert k.get_records(ShardIterator=latest)["Records"] == []
    k.put_record(StreamName="one", Data=b"after", PartitionKey="p")
    assert [r["Data"] for r in k.get_records(ShardIterator=latest)["Records"]] == [b"after"]
    # Limit pages through a shard; MillisBehindLatest says how far behind.
    it = k.get_shard_iterator(StreamName="one", ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    r = k.get_records(ShardIterator=it, Limit=7)
    assert [int(x["Data"]) for x in r["Records"]] == list(range(7))
    assert r["MillisBehindLatest"] > 0
    r = k.get_records(ShardIterator=r["NextShardIterator"], Limit=3)
    assert [int(x["Data"]) for x in r["Records"]] == [7, 8, 9]

    # GetRecords stays within 10 MiB whatever the Limit.
    create(k, "big", 1)
    for _ in range(12):
        k.put_record(StreamName="big", Data=b"m" * (1 << 20), PartitionKey="p")
    it = k.get_shard_iterator(StreamName="big", ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    r = k.get_records(ShardIterator=it, Limit=10_000)
    assert 1 <= len(r["Records"]) < 12 and sum(len(x["Data"]) for x in r["Records"]) <= 10 << 20
    rest = k.get_records(ShardIterator=r["NextShardIterator"])["Records"]
    assert len(r["Records"]) + len(rest) == 12

    # ListStreams pages.
    page = k.list_streams(Limit=1)
    assert page["StreamNames"] == ["big"] and page["HasMoreStreams"] is True
    last = k.list_streams(NextToken=page["NextToken"])
    assert last["StreamNames"] == ["one"] and last["HasMoreStreams"] is False
    assert k.list_streams(ExclusiveStartStreamName="big")["StreamNames"] == ["one"]

    # ExplicitHashKey overrides the partition key's hash.
    create(k, "two", 2)
    low = k.put_record(StreamName="two", Data=b"x", PartitionKey="same", ExplicitHashKey="0")
    high = k.put_record(StreamName="two", Data=b"x", PartitionKey="same", ExplicitHashKey=str(HASH_MAX))
    assert (low["ShardId"], high["ShardId"]) == ("shardId-000000000000", "shardId-000000000001")


def test_bad_input_answers_kinesis_exceptions(hydrant_factory, garage, bucket):
    h = hydrant_factory(s3_store_yaml(garage) + "kinesis:\n  shards_max: 8\n  iterator_ttl_secs: 1\n").start()
    k = h.kinesis()
    create(k, "s", 2)
    shard0 = "shardId-000000000000"
    it = k.get_shard_iterator(StreamName="s", ShardId=shard0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    time.sleep(1.5)
    code, msg = error_code(lambda: k.get_records(ShardIterator=it))
    assert code == "ExpiredIteratorException" and "expired" in msg

    assert error_code(lambda: k.get_records(ShardIterator="AAAA" * 20))[0] == "InvalidArgumentException"
    assert error_code(lambda: k.describe_stream(StreamName="nope"))[0] == "ResourceNotFoundException"
    assert error_code(lambda: k.put_record(StreamName="nope", Data=b"x", PartitionKey="p"))[0] == "ResourceNotFoundException"
    assert error_code(lambda: k.create_stream(StreamName="s", ShardCount=1))[0] == "ResourceInUseException"
    code, msg = error_code(lambda: k.create_stream(StreamName="big", ShardCount=7))
    assert code == "LimitExceededException" and "kinesis.shards_max" in msg
    code, msg = error_code(lambda: k.put_record(StreamName="s", Data=b"x" * ((1 << 20) + 1), PartitionKey="p"))
    assert code == "ValidationException" and "data" in msg
    code, msg = error_code(lambda: k.put_records(StreamName="s", Records=[{"Data": b"x", "PartitionKey": "p"}] * 501))
    assert code == "ValidationException" and "records" in msg
    code, _ = error_code(lambda: k.put_records(StreamName="s", Records=[{"Data": b"x" * (1 << 20), "PartitionKey": "p"}] * 5))
    assert code == "InvalidArgumentException"
    code, msg = error_code(lambda: k.put_record(StreamName="s", Data=b"x", PartitionKey="p", ExplicitHashKey=str(2**128)))
    assert code == "InvalidArgumentException" and "ExplicitHashKey" in msg
    assert error_code(lambda: k.put_record(StreamName="s", Data=b"x", PartitionKey="p" * 257))[0] == "ValidationException"
    assert error_code(lambda: k.get_shard_iterator(StreamName="s", ShardId="shardId-000000000009", ShardIteratorType="LATEST"))[0] == "ResourceNotFoundException"
    on_shard1 = k.put_record(StreamName="s", Data=b"x", PartitionKey="p", ExplicitHashKey=str(HASH_MAX))["SequenceNumber"]
    code, msg = error_code(lambda: k.get_shard_iterator(StreamName="s", ShardId=shard0, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=on_shard1))
    assert code == "InvalidArgumentException" and "shardId-000000000001" in msg
    assert error_code(lambda: k.get_shard_iterator(StreamName="s", ShardId=shard0, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber="12345"))[0] == "InvalidArgumentException"
    assert error_code(lambda: k.get_shard_iterator(StreamName="s", ShardId=shard0, ShardIteratorType="AT_SEQUENCE_NUMBER"))[0] == "InvalidArgumentException"
    fresh = k.get_shard_iterator(StreamName="s", ShardId=shard0, ShardIteratorType="LATEST")["ShardIterator"]
    assert error_code(lambda: k.get_records(ShardIterator=fresh, Limit=10_001))[0] == "ValidationException"

    # Retention: 24 h by default, up to 8,760 h, increase and decrease each one way.
    assert k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["RetentionPeriodHours"] == 24
    k.increase_stream_retention_period(StreamName="s", RetentionPeriodHours=8760)
    assert error_code(lambda: k.increase_stream_retention_period(StreamName="s", RetentionPeriodHours=48))[0] == "InvalidArgumentException"
    assert error_code(lambda: k.increase_stream_retention_period(StreamName="s", RetentionPeriodHours=9000))[0] == "InvalidArgumentException"
    k.decrease_stream_retention_period(StreamName="s", RetentionPeriodHours=48)
    assert error_code(lambda: k.decrease_stream_retention_period(StreamName="s", RetentionPeriodHours=10))[0] == "InvalidArgumentException"
    assert k.describe_stream(StreamName="s")["StreamDescription"]["RetentionPeriodHours"] == 48

    # Tags: added, listed in pages, removed, bounded.
    k.add_tags_to_stream(StreamName="s", Tags={"team": "data", "env": "test"})
    tags = k.list_tags_for_stream(StreamName="s")
    assert tags["Tags"] == [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "data"}]
    assert tags["HasMoreTags"] is False
    assert k.list_tags_for_stream(StreamName="s", Limit=1)["HasMoreTags"] is True
    k.remove_tags_from_stream(StreamName="s", TagKeys=["env"])
    assert k.list_tags_for_stream(StreamName="s")["Tags"] == [{"Key": "team", "Value": "data"}]
    assert error_code(lambda: k.add_tags_to_stream(StreamName="s", Tags={f"k{i}": "v" for i in range(50)}))[0] == "LimitExceededException"
    assert error_code(lambda: k.add_tags_to_stream(StreamName="s", Tags={"aws:x": "v"}))[0] == "InvalidArgumentException"

    # A Kinesis stream that a delivery stream reads cannot be deleted under it.
    fh = h.firehose()
    fh.create_delivery_stream(
        DeliveryStreamName="reader", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "RoleARN": "arn:aws:iam::000000000000:role/r"},
        ExtendedS3DestinationConfiguration={"BucketARN": f"arn:aws:s3:::{bucket}", "RoleARN": "arn:aws:iam::000000000000:role/r"},
    )
    assert error_code(lambda: k.delete_stream(StreamName="s"))[0] == "ResourceInUseException"
    code, msg = error_code(lambda: fh.put_record(DeliveryStreamName="reader", Record={"Data": b"x"}))
    assert code == "InvalidArgumentException" and "KinesisStreamAsSource" in msg
    code, _ = error_code(lambda: fh.create_delivery_stream(
        DeliveryStreamName="orphan", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/missing", "RoleARN": "arn:aws:iam::000000000000:role/r"},
        ExtendedS3DestinationConfiguration={"BucketARN": f"arn:aws:s3:::{bucket}", "RoleARN": "arn:aws:iam::000000000000:role/r"},
    ))
    assert code == "InvalidArgumentException"
    fh.delete_delivery_stream(DeliveryStreamName="reader")
    wait_until(lambda: not (h.data_dir / "kinesis/s/checkpoints/firehose-reader").exists(), timeout=30, what="the reader's checkpoints removed")
    k.delete_stream(StreamName="s")
    assert k.list_streams()["StreamNames"] == []
    assert error_code(lambda: k.get_records(ShardIterator=fresh))[0] in ("ResourceNotFoundException", "ExpiredIteratorException")
    # A new stream of the same name starts empty; old sequence numbers are not its.
    create(k, "s", 2)
    assert error_code(lambda: k.get_shard_iterator(StreamName="s", ShardId="shardId-000000000001", ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=on_shard1))[0] == "InvalidArgumentException"
    assert read_shard(k, "s", "shardId-000000000001")[0] == []


def test_aws_cli_creates_puts_and_reads(hydrant_factory):
    h = hydrant_factory("").start()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "PATH": os.environ["PATH"]}

    def aws(*args):
        r = subprocess.run(["aws", "--endpoint-url", h.url, "kinesis", *args], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else {}

    aws("create-stream", "--stream-name", "cli", "--shard-count", "2")
    aws("wait", "stream-exists", "--stream-name", "cli")
    put = aws("put-record", "--stream-name", "cli", "--data", "hello from the cli", "--partition-key", "k1")
    batch = aws("put-records", "--stream-name", "cli", "--records",
                json.dumps([{"Data": f"rec {i}", "PartitionKey": "k1"} for i in range(3)]))
    assert batch["FailedRecordCount"] == 0
    assert {r["ShardId"] for r in batch["Records"]} == {put["ShardId"]} == {expected_shard("k1", 2)}
    it = aws("get-shard-iterator", "--stream-name", "cli", "--shard-id", put["ShardId"],
             "--shard-iterator-type", "AT_SEQUENCE_NUMBER", "--starting-sequence-number", put["SequenceNumber"])
    got = aws("get-records", "--shard-iterator", it["ShardIterator"])
    import base64

    assert [base64.b64decode(r["Data"]).decode() for r in got["Records"]] == ["hello from the cli", "rec 0", "rec 1", "rec 2"]
    assert aws("list-streams")["StreamNames"] == ["cli"]
    aws("delete-stream", "--stream-name", "cli")
    assert aws("list-streams")["StreamNames"] == []


def test_acknowledged_records_survive_sigkill(hydrant_factory):
    import threading

    h = hydrant_factory("").start()
    k = h.kinesis()
    create(k, "durable", 3)
    before = k.get_shard_iterator(StreamName="durable", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    acked = {}
    stop = threading.Event()

    def produce(worker):
        client = h.kinesis()
        b = 0
        while not stop.is_set():
            batch = [{"Data": f"{worker}-{b}-{i}".encode(), "PartitionKey": f"p{i % 17}"} for i in range(200)]
            b += 1
            try:
                r = client.put_records(StreamName="durable", Records=batch)
            except Exception:  # noqa: BLE001 - the daemon was killed under it
                return
            for rec, res in zip(batch, r["Records"]):
                if "SequenceNumber" in res:
                    acked[res["SequenceNumber"]] = (res["ShardId"], rec["Data"])

    producers = [threading.Thread(target=produce, args=(w,)) for w in range(3)]
    for p in producers:
        p.start()
    wait_until(lambda: len(acked) >= 3000, timeout=60, what="3000 acknowledged records")
    h.kill()  # SIGKILL while the producers are putting
    stop.set()
    for p in producers:
        p.join()
    h.start()
    k = h.kinesis()
    assert k.describe_stream_summary(StreamName="durable")["StreamDescriptionSummary"]["OpenShardCount"] == 3
    found = {}
    for i in range(3):
        shard = f"shardId-{i:012d}"
        for r in read_shard(k, "durable", shard)[0]:
            found[r["SequenceNumber"]] = (shard, r["Data"])
    lost = {s: v for s, v in acked.items() if found.get(s) != v}
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost or changed by SIGKILL"
    # An iterator issued before the kill still reads after it.
    assert len(k.get_records(ShardIterator=before)["Records"]) == sum(1 for s, _ in found.values() if s == "shardId-000000000000")
    # New records continue their shard's sequence.
    new = k.put_record(StreamName="durable", Data=b"new", PartitionKey="p0")
    assert int(new["SequenceNumber"]) > max(int(s) for s, (shard, _) in acked.items() if shard == new["ShardId"])


def test_firehose_reads_a_kinesis_stream_into_garage(hydrant_factory, garage, bucket):
    h = hydrant_factory(s3_store_yaml(garage)).start()
    k = h.kinesis()
    create(k, "clicks", 2)
    # Written before the delivery stream exists: Firehose starts at LATEST.
    k.put_records(StreamName="clicks", Records=[{"Data": json.dumps({"early": i}).encode(), "PartitionKey": str(i)} for i in range(100)])
    fh = h.firehose()
    fh.create_delivery_stream(
        DeliveryStreamName="clicks-to-s3", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/clicks", "RoleARN": "arn:aws:iam::000000000000:role/r"},
        ExtendedS3DestinationConfiguration={
            "BucketARN": f"arn:aws:s3:::{bucket}", "RoleARN": "arn:aws:iam::000000000000:role/r",
            "Prefix": "clicks/", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]},
        },
    )
    d = fh.describe_delivery_stream(DeliveryStreamName="clicks-to-s3")["DeliveryStreamDescription"]
    assert d["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert d["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"].endswith(":stream/clicks")
    assert fh.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource")["DeliveryStreamNames"] == ["clicks-to-s3"]
    assert fh.list_delivery_streams(DeliveryStreamType="DirectPut")["DeliveryStreamNames"] == []

    def put(lo, hi):
        for start in range(lo, hi, 500):
            r = k.put_records(StreamName="clicks", Records=[{"Data": json.dumps({"n": i}).encode(), "PartitionKey": f"u{i % 50}"} for i in range(start, min(hi, start + 500))])
            assert r["FailedRecordCount"] == 0

    put(0, 3000)
    s3 = garage.s3()

    def delivered(n):
        lines = records_in(read_objects(s3, bucket, "clicks/"))
        return lines if len(lines) >= n else None

    lines = wait_until(lambda: delivered(3000), timeout=60, what="3000 records in Garage")
    assert sorted(json.loads(x)["n"] for x in lines) == list(range(3000)), "each once, none from before the delivery stream"
    # Another consumer reads the same stream, all of it, with its own position.
    total = sum(len(read_shard(k, "clicks", f"shardId-{i:012d}")[0]) for i in range(2))
    assert total == 3100
    # Its checkpoints survive SIGKILL: after restart it goes on, nothing twice.
    h.kill()
    h.start()
    k = h.kinesis()
    put(3000, 3500)
    lines = wait_until(lambda: delivered(3500), timeout=60, what="3500 records in Garage")
    time.sleep(2)
    lines = records_in(read_objects(s3, bucket, "clicks/"))
    ns = [json.loads(x)["n"] for x in lines]
    assert sorted(set(ns)) == list(range(3500))
    assert len(ns) <= 3500 + 500, "at most the last unacknowledged batch again"
    assert h.metric("delivery_records", stream="clicks-to-s3") >= 500


def cbor_call(h, op, body):
    req = urllib.request.Request(
        h.url + "/", data=cbor2.dumps(body), method="POST",
        headers={"Content-Type": "application/x-amz-cbor-1.1", "X-Amz-Target": f"Kinesis_20131202.{op}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw, ctype = r.status, r.read(), r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        status, raw, ctype = e.code, e.read(), e.headers["Content-Type"]
    assert ctype == "application/x-amz-cbor-1.1"
    # The AWS SDKs put epoch milliseconds in tag 1.
    return status, cbor2.loads(raw, semantic_decoders={1: lambda value, _immutable: ("epoch-ms", value)})


def test_cbor_requests_as_the_java_sdk_sends_them(hydrant_factory):
    h = hydrant_factory("").start()
    status, _ = cbor_call(h, "CreateStream", {"StreamName": "j", "ShardCount": 1})
    assert status == 200
    status, put = cbor_call(h, "PutRecord", {"StreamName": "j", "Data": b"\x00binary\xff", "PartitionKey": "p"})
    assert status == 200 and put["ShardId"] == "shardId-000000000000"
    now_ms = int(time.time() * 1000)
    status, it = cbor_call(h, "GetShardIterator", {
        "StreamName": "j", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": cbor2.CBORTag(1, now_ms - 60_000),
    })
    assert status == 200
    status, got = cbor_call(h, "GetRecords", {"ShardIterator": it["ShardIterator"]})
    assert status == 200
    [rec] = got["Records"]
    assert rec["Data"] == b"\x00binary\xff", "blobs travel as CBOR byte strings"
    kind, ms = rec["ApproximateArrivalTimestamp"]
    assert kind == "epoch-ms" and abs(ms - now_ms) < 60_000
    assert rec["SequenceNumber"] == put["SequenceNumber"]
    # Errors come back in CBOR too, with Kinesis's type.
    status, err = cbor_call(h, "DescribeStream", {"StreamName": "missing"})
    assert status == 400 and err["__type"] == "ResourceNotFoundException"
    status, err = cbor_call(h, "GetRecords", {"ShardIterator": "bogus"})
    assert status == 400 and err["__type"] == "InvalidArgumentException"


def test_cbor_put_records_as_the_java_sdk_sends_them(hydrant_factory):
    h = hydrant_factory("").start()
    status, _ = cbor_call(h, "CreateStream", {"StreamName": "j", "ShardCount": 2})
    assert status == 200
    records = [
        {"Data": b"\x00first\xff", "PartitionKey": "a"},
        {"Data": b"", "PartitionKey": "\u00e9t\u00e9", "ExplicitHashKey": "0"},
        {"Data": b"third" * 100, "PartitionKey": "z", "ExplicitHashKey": str(2**128 - 1)},
    ]
    status, put = cbor_call(h, "PutRecords", {"StreamName": "j", "Records": records})
    assert status == 200 and put["FailedRecordCount"] == 0, put
    shards = [r["ShardId"] for r in put["Records"]]
    assert shards[1] == "shardId-000000000000" and shards[2] == "shardId-000000000001"
    got = {}
    for shard in sorted(set(shards)):
        status, it = cbor_call(h, "GetShardIterator", {
            "StreamName": "j", "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"})
        status, out = cbor_call(h, "GetRecords", {"ShardIterator": it["ShardIterator"]})
        assert status == 200
        got.update({r["SequenceNumber"]: (r["Data"], r["PartitionKey"]) for r in out["Records"]})
    assert [got[r["SequenceNumber"]] for r in put["Records"]] == [(r["Data"], r["PartitionKey"]) for r in records]
    # What the SDK's shape does not cover is read as before: Data as base64
    # text is taken, an empty partition key is refused, in CBOR.
    status, put = cbor_call(h, "PutRecords", {"StreamName": "j", "Records": [{"Data": "aGk=", "PartitionKey": "p"}]})
    assert status == 200 and put["FailedRecordCount"] == 0
    status, err = cbor_call(h, "PutRecords", {"StreamName": "j", "Records": [{"Data": b"x", "PartitionKey": ""}]})
    assert status == 400 and err["__type"] == "ValidationException" and "partitionKey" in err["message"]
    status, err = cbor_call(h, "PutRecords", {"StreamName": "missing", "Records": [{"Data": b"x", "PartitionKey": "p"}]})
    assert status == 400 and err["__type"] == "ResourceNotFoundException"


def test_shard_write_limits_answer_provisioned_throughput_exceeded(hydrant_factory):
    h = hydrant_factory("kinesis:\n  shard_write_limits: true\n").start()
    k = h.kinesis()
    create(k, "limited", 1)
    # 1,000 records/s per shard: a burst of 1,500 has some refused, per
    # record. The bucket holds 1,000 and refills at 1,000/s while the burst
    # is sent, so what is admitted is bounded by the burst's own duration.
    results = []
    started = time.monotonic()
    for _ in range(3):
        r = k.put_records(StreamName="limited", Records=[{"Data": b"x", "PartitionKey": "p"}] * 500)
        results.extend(r["Records"])
    elapsed = time.monotonic() - started
    refused = [x for x in results if "ErrorCode" in x]
    admitted = len(results) - len(refused)
    assert 1000 <= admitted <= 1000 + 1000 * elapsed + 10, (admitted, elapsed)
    if elapsed < 0.4:
        assert refused, f"nothing refused in a burst of 1,500 over {elapsed:.2f} s"
    assert {x["ErrorCode"] for x in refused} <= {"ProvisionedThroughputExceededException"}
    # 1 MiB/s: a single 1 MiB record fills the bucket; the next one is refused.
    time.sleep(1.1)
    k.put_record(StreamName="limited", Data=b"y" * (1 << 20), PartitionKey="p")
    code, msg = error_code(lambda: k.put_record(StreamName="limited", Data=b"y" * (1 << 20), PartitionKey="p"))
    assert code == "ProvisionedThroughputExceededException" and "shardId-000000000000" in msg
    # What was admitted is all there.
    stored = read_shard(k, "limited", "shardId-000000000000")[0]
    assert len(stored) == len(results) - len(refused) + 1
    assert h.metric("kinesis_throttled_records", stream="limited") == len(refused) + 1


def test_the_kinesis_to_s3_example_end_to_end(hydrant_factory, garage):
    """config/kinesis-to-s3.yaml as shipped: the declared Kinesis stream is
    created at start, and the delivery stream reading it archives to Garage."""
    from pathlib import Path

    import zstandard

    root = Path(__file__).resolve().parent.parent
    body = (root / "config" / "kinesis-to-s3.yaml").read_text()
    body = "\n".join(l for l in body.splitlines() if not l.startswith(("listen:", "data_dir:"))) + "\n"
    body = body.replace("http://127.0.0.1:3900", garage.endpoint).replace("interval_secs: 60", "interval_secs: 1")
    garage.create_bucket("orders")
    h = hydrant_factory(body, env={"GARAGE_KEY_ID": garage.key_id, "GARAGE_SECRET": garage.secret}).start()
    k = h.kinesis()
    d = k.describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]
    assert (d["OpenShardCount"], d["RetentionPeriodHours"]) == (4, 72)
    code, msg = error_code(lambda: k.delete_stream(StreamName="orders"))
    assert code == "ResourceInUseException"
    for start in range(0, 2000, 500):
        r = k.put_records(StreamName="orders", Records=[{"Data": json.dumps({"order": i}).encode() + b"\n", "PartitionKey": f"c{i % 40}"} for i in range(start, start + 500)])
        assert r["FailedRecordCount"] == 0
    s3 = garage.s3()

    def delivered():
        objects = read_objects(s3, "orders", "orders/")
        lines = [l for key, b in objects.items() for l in zstandard.ZstdDecompressor().decompressobj().decompress(b).decode().splitlines() if l]
        assert all(key.endswith(".zst") for key in objects)
        return lines if len(lines) >= 2000 else None

    lines = wait_until(delivered, timeout=60, what="2000 orders in Garage")
    assert sorted(json.loads(x)["order"] for x in lines) == list(range(2000))
