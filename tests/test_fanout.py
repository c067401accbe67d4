"""Enhanced fan-out: registered consumers and SubscribeToShard, driven by
boto3 (HTTP/1.1) and the AWS SDK for JavaScript v3 (HTTP/2): every record
pushed once and in order, continuation across a re-subscribe, one
subscription per consumer and shard, a subscription's end after its time,
and a closed shard's last event naming its children."""

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import botocore.exceptions
import pytest

from harness import error_code
from harness import wait_until

ROOT = Path(__file__).resolve().parent.parent


def stream_with_consumer(k, name="s", shards=1, consumer="app"):
    k.create_stream(StreamName=name, ShardCount=shards)
    arn = k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    c = k.register_stream_consumer(StreamARN=arn, ConsumerName=consumer)["Consumer"]
    wait_until(lambda: k.describe_stream_consumer(ConsumerARN=c["ConsumerARN"])["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE",
               timeout=10, what="the consumer ACTIVE")
    return arn, c["ConsumerARN"]


def put(k, stream, lo, hi, key=None):
    seqs = []
    for start in range(lo, hi, 500):
        r = k.put_records(StreamName=stream, Records=[
            {"Data": json.dumps({"n": i}).encode(), "PartitionKey": key or f"k{i}"} for i in range(start, min(hi, start + 500))])
        assert r["FailedRecordCount"] == 0
        seqs.extend(x["SequenceNumber"] for x in r["Records"])
    return seqs


def events(response):
    for ev in response["EventStream"]:
        yield ev["SubscribeToShardEvent"]


def test_consumers_are_registered_described_listed_and_deregistered(hydrant_factory):
    h = hydrant_factory("kinesis:\n  consumers_per_stream_max: 3\n  consumer_activation_ms: 500\n").start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=1)
    arn = k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamARN"]
    a = k.register_stream_consumer(StreamARN=arn, ConsumerName="a")["Consumer"]
    assert a["ConsumerStatus"] == "CREATING"
    assert a["ConsumerARN"].startswith(arn + "/consumer/a:")
    # Not ACTIVE yet: no subscription.
    assert error_code(lambda: k.subscribe_to_shard(ConsumerARN=a["ConsumerARN"], ShardId="shardId-000000000000",
                                                   StartingPosition={"Type": "LATEST"}))[0] == "ResourceInUseException"
    wait_until(lambda: k.describe_stream_consumer(ConsumerARN=a["ConsumerARN"])["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE",
               timeout=10, what="consumer a ACTIVE")
    d = k.describe_stream_consumer(StreamARN=arn, ConsumerName="a")["ConsumerDescription"]
    assert (d["ConsumerARN"], d["StreamARN"]) == (a["ConsumerARN"], arn)
    assert error_code(lambda: k.register_stream_consumer(StreamARN=arn, ConsumerName="a"))[0] == "ResourceInUseException"
    assert error_code(lambda: k.register_stream_consumer(StreamARN=arn, ConsumerName="bad name"))[0] == "ValidationException"
    b = k.register_stream_consumer(StreamARN=arn, ConsumerName="b")["Consumer"]
    k.register_stream_consumer(StreamARN=arn, ConsumerName="c")
    code, msg = error_code(lambda: k.register_stream_consumer(StreamARN=arn, ConsumerName="d"))
    assert code == "LimitExceededException" and "consumers_per_stream_max" in msg
    page = k.list_stream_consumers(StreamARN=arn, MaxResults=2)
    rest = k.list_stream_consumers(StreamARN=arn, NextToken=page["NextToken"])
    assert [c["ConsumerName"] for c in page["Consumers"] + rest["Consumers"]] == ["a", "b", "c"]
    assert "NextToken" not in rest
    assert k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["ConsumerCount"] == 3
    k.deregister_stream_consumer(ConsumerARN=b["ConsumerARN"])
    k.deregister_stream_consumer(StreamARN=arn, ConsumerName="c")
    assert [c["ConsumerName"] for c in k.list_stream_consumers(StreamARN=arn)["Consumers"]] == ["a"]
    assert error_code(lambda: k.describe_stream_consumer(ConsumerARN=b["ConsumerARN"]))[0] == "ResourceNotFoundException"
    assert error_code(lambda: k.deregister_stream_consumer(StreamARN=arn, ConsumerName="c"))[0] == "ResourceNotFoundException"
    # Registered consumers survive a restart, with their ARNs.
    h.kill()
    h.start()
    k = h.kinesis()
    d = k.describe_stream_consumer(StreamARN=arn, ConsumerName="a")["ConsumerDescription"]
    assert (d["ConsumerARN"], d["ConsumerStatus"]) == (a["ConsumerARN"], "ACTIVE")


def test_subscribe_pushes_every_record_once_in_order_and_continues_after_a_resubscribe(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    _, consumer = stream_with_consumer(k)
    acked = put(k, "s", 0, 100)
    r = k.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "TRIM_HORIZON"})
    # Another subscription of the same consumer and shard is refused while it is young.
    assert error_code(lambda: k.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000",
                                                   StartingPosition={"Type": "LATEST"}))[0] == "ResourceInUseException"
    # Records put while subscribed are pushed as they become durable.
    more = threading.Thread(target=lambda: acked.extend(put(h.kinesis(), "s", 100, 300)))
    got, last = [], None
    for e in events(r):
        if not got:
            more.start()
        got.extend(x["SequenceNumber"] for x in e["Records"])
        assert e["MillisBehindLatest"] >= 0
        if e["Records"]:
            assert e["ContinuationSequenceNumber"] == e["Records"][-1]["SequenceNumber"]
        last = e["ContinuationSequenceNumber"]
        if len(got) >= 300:
            break
    r["EventStream"].close()
    more.join()
    assert got == sorted(acked, key=int), "every record once, in order"
    # Re-subscribing after the continuation gives exactly what came since.
    time.sleep(5.5)
    newer = put(k, "s", 300, 350)
    r = k.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000",
                             StartingPosition={"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last})
    got = []
    for e in events(r):
        got.extend(x["SequenceNumber"] for x in e["Records"])
        if len(got) >= 50:
            break
    r["EventStream"].close()
    assert got == newer
    assert h.metric("kinesis_subscription_records", stream="s", consumer="app") >= 350
    assert h.metric("kinesis_subscription_events", stream="s", consumer="app") >= 2


def test_a_later_subscription_takes_the_shard_over(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    _, consumer = stream_with_consumer(k)
    first = k.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    stream = events(first)
    next(stream)  # the first (empty) event: subscribed
    time.sleep(5.5)
    second = k.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    with pytest.raises(botocore.exceptions.EventStreamError) as e:
        for _ in stream:
            pass
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    put(k, "s", 0, 3)
    got = []
    for ev in events(second):
        got.extend(ev["Records"])
        if len(got) >= 3:
            break
    second["EventStream"].close()
    assert [json.loads(x["Data"])["n"] for x in got] == [0, 1, 2]


def test_a_subscription_ends_after_its_time(hydrant_factory):
    h = hydrant_factory("kinesis:\n  subscription_secs: 2\n").start()
    k = h.kinesis()
    _, consumer = stream_with_consumer(k)
    put(k, "s", 0, 10)
    r = k.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "TRIM_HORIZON"})
    done = threading.Event()
    got = []

    def drain():
        for e in events(r):
            got.extend(e["Records"])
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    assert done.wait(30), "the event stream did not end"
    assert len(got) == 10
    assert h.metric("kinesis_subscriptions_open", stream="s") == 0


def test_a_closed_shards_last_event_names_its_children(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    _, consumer = stream_with_consumer(k)
    acked = put(k, "s", 0, 20)
    r = k.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "TRIM_HORIZON"})
    got, children = [], None
    for e in events(r):
        got.extend(x["SequenceNumber"] for x in e["Records"])
        if len(got) == 20 and children is None and not e.get("ChildShards"):
            k.split_shard(StreamName="s", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
        if e.get("ChildShards"):
            children = sorted(c["ShardId"] for c in e["ChildShards"])
    assert got == acked
    assert children == ["shardId-000000000001", "shardId-000000000002"]


@pytest.fixture
def js_sdk(tmp_path):
    """The AWS SDK for JavaScript v3 (scripts/test.sh installs it) and the
    subscriber script beside it, so node resolves its imports."""
    modules = os.environ.get("HYDRANT_JS_MODULES")
    if not modules or not Path(modules).is_dir():
        pytest.fail("HYDRANT_JS_MODULES is not set: run the tests with scripts/test.sh")
    script = Path(modules).parent / "subscribe.mjs"
    shutil.copy(ROOT / "tests/js/subscribe.mjs", script)
    return script


def run_js(script, *args):
    r = subprocess.run(["node", str(script), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def test_the_javascript_sdk_puts_and_subscribes_over_http2(hydrant_factory, js_sdk):
    h = hydrant_factory("").start()
    k = h.kinesis()
    _, consumer = stream_with_consumer(k)
    acked = put(k, "s", 0, 3)
    lines = run_js(js_sdk, h.url, "s", consumer, "shardId-000000000000", "TRIM_HORIZON", "--put", "5", "--until", "8")
    assert lines[0] == {"put": 5, "failed": 0}
    records = [r for line in lines if "records" in line for r in line["records"]]
    assert [json.loads(r["data"]) for r in records] == [{"n": 0}, {"n": 1}, {"n": 2}] + [{"js": i} for i in range(5)]
    assert [r["seq"] for r in records][:3] == acked
    last = [line for line in lines if "records" in line][-1]["continuation"]
    assert last == records[-1]["seq"]
    # Continuation from the last event, after the first subscription closed.
    time.sleep(5.5)
    newer = put(k, "s", 3, 5)
    lines = run_js(js_sdk, h.url, "s", consumer, "shardId-000000000000", "AFTER_SEQUENCE_NUMBER", last, "--until", "2")
    assert [r["seq"] for line in lines if "records" in line for r in line["records"]] == newer
    # A closed shard's last event names its children, and the stream ends.
    k.split_shard(StreamName="s", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    time.sleep(5.5)
    lines = run_js(js_sdk, h.url, "s", consumer, "shardId-000000000000", "TRIM_HORIZON")
    assert sum(len(line.get("records", [])) for line in lines) == 10
    assert sorted([line for line in lines if "records" in line][-1]["children"]) == ["shardId-000000000001", "shardId-000000000002"]
    assert lines[-1] == {"end": True, "received": 10}
