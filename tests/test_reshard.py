"""Resharding a Kinesis stream while producers put, driven by boto3 and the
AWS CLI: splits, merges and UpdateShardCount up and down; every acknowledged
record read back exactly once by walking the lineage from TRIM_HORIZON, in
order per partition key; hash ranges tiling the 128-bit space; Kinesis's
exceptions for bad reshard requests; a reshard cut short by a crash; and a
delivery stream that reads parents before children across a SIGKILL."""

import json
import os
import random
import subprocess
import threading
import time

import botocore.exceptions
import pytest

from harness import Receiver, wait_until
from harness import error_code

HASH_MAX = 2**128 - 1
KEYS = [f"key-{i}" for i in range(40)]


def create(k, name, shards):
    k.create_stream(StreamName=name, ShardCount=shards)
    k.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})


def list_shards(k, name, **kw):
    out, token = [], None
    while True:
        r = k.list_shards(NextToken=token, MaxResults=3) if token else k.list_shards(StreamName=name, MaxResults=3, **kw)
        out.extend(r["Shards"])
        token = r.get("NextToken")
        if not token:
            return out


def open_shards(k, name):
    shards = list_shards(k, name, ShardFilter={"Type": "AT_LATEST"})
    return sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))


def read_whole_shard(k, name, shard_id):
    """Every record of a shard from TRIM_HORIZON: to its end and its children
    if closed, to the tip if open."""
    it = k.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    while True:
        r = k.get_records(ShardIterator=it, Limit=500)
        out.extend(r["Records"])
        if "NextShardIterator" not in r or r["NextShardIterator"] is None:
            assert "ChildShards" in r, r
            return out, r["ChildShards"]
        it = r["NextShardIterator"]
        if not r["Records"] and r["MillisBehindLatest"] == 0:
            return out, None


class Producer:
    """Puts one record per key per call, each key's records numbered from 0,
    and remembers what was acknowledged. A call with an unknown outcome (the
    daemon gone) moves on: that record may or may not exist."""

    def __init__(self, make_client, stream, pace=0.0):
        self.make_client = make_client
        self.pace = pace
        self.stream = stream
        self.next = {key: 0 for key in KEYS}
        self.acked = set()
        self.stop = threading.Event()
        self.calls = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def run(self):
        k = self.make_client()
        while not self.stop.is_set():
            batch = [(key, self.next[key]) for key in KEYS]
            pending = batch
            try:
                while pending:
                    r = k.put_records(StreamName=self.stream, Records=[
                        {"Data": json.dumps({"k": key, "i": i}).encode(), "PartitionKey": key} for key, i in pending])
                    failed = []
                    for (key, i), res in zip(pending, r["Records"]):
                        if "SequenceNumber" in res:
                            self.acked.add((key, i))
                        else:
                            failed.append((key, i))
                    pending = failed
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                time.sleep(0.2)
                k = self.make_client()
            for key, i in batch:
                self.next[key] = i + 1
            self.calls += 1
            time.sleep(self.pace)

    def wait_calls(self, n):
        target = self.calls + n
        wait_until(lambda: self.calls >= target, timeout=60, what=f"{n} more put calls")

    def finish(self):
        self.stop.set()
        self.thread.join(60)
        return self.acked


def check_tiling_and_lineage(shards):
    by_id = {s["ShardId"]: s for s in shards}
    rng = {s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in shards}
    open_ = sorted((s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]), key=lambda s: rng[s["ShardId"]][0])
    assert rng[open_[0]["ShardId"]][0] == 0 and rng[open_[-1]["ShardId"]][1] == HASH_MAX
    for a, b in zip(open_, open_[1:]):
        assert rng[a["ShardId"]][1] + 1 == rng[b["ShardId"]][0], "open shards leave a gap or overlap"
    for s in shards:
        p, q = s.get("ParentShardId"), s.get("AdjacentParentShardId")
        if p and q:
            lo = min(rng[p][0], rng[q][0])
            hi = max(rng[p][1], rng[q][1])
            assert rng[s["ShardId"]] == (lo, hi), "a merge's child covers both parents exactly"
        elif p:
            assert rng[p][0] <= rng[s["ShardId"]][0] and rng[s["ShardId"]][1] <= rng[p][1]
        if p:
            assert "EndingSequenceNumber" in by_id[p]["SequenceNumberRange"], "a parent is closed"
    # A split's two children tile their parent.
    children = {}
    for s in shards:
        if s.get("ParentShardId") and not s.get("AdjacentParentShardId"):
            children.setdefault(s["ParentShardId"], []).append(rng[s["ShardId"]])
    for parent, kids in children.items():
        kids.sort()
        assert len(kids) == 2 and kids[0][0] == rng[parent][0] and kids[1][1] == rng[parent][1] and kids[0][1] + 1 == kids[1][0]


def read_back(k, name):
    """Every record of the stream, walking each shard from TRIM_HORIZON in
    lineage order (a child's index is above its parents')."""
    shards = list_shards(k, name)
    got = []
    for s in sorted(shards, key=lambda s: s["ShardId"]):
        recs, children = read_whole_shard(k, name, s["ShardId"])
        closed = "EndingSequenceNumber" in s["SequenceNumberRange"]
        assert (children is not None) == closed, s
        if closed:
            kids = {c["ShardId"] for c in children}
            assert kids == {x["ShardId"] for x in shards if s["ShardId"] in (x.get("ParentShardId"), x.get("AdjacentParentShardId"))}
            if recs:
                assert recs[-1]["SequenceNumber"] == s["SequenceNumberRange"]["EndingSequenceNumber"]
        for r in recs:
            doc = json.loads(r["Data"])
            assert r["PartitionKey"] == doc["k"]
            got.append((doc["k"], doc["i"]))
    return shards, got


def assert_once_in_key_order(got, acked):
    assert len(got) == len(set(got)), "a record was read twice"
    assert acked <= set(got), f"{len(acked - set(got))} acknowledged records missing"
    last = {}
    for key, i in got:
        assert i > last.get(key, -1), f"{key}: {i} after {last.get(key)}"
        last[key] = i


def test_split_merge_and_scaling_under_load_lose_nothing_and_keep_key_order(hydrant_factory):
    h = hydrant_factory("kinesis:\n  shards_max: 64\n").start()
    k = h.kinesis()
    create(k, "orders", 2)
    p = Producer(h.kinesis, "orders").start()
    p.wait_calls(5)

    # Split the first shard at the middle of its range (boto3).
    s0 = k.list_shards(StreamName="orders")["Shards"][0]
    lo, hi = int(s0["HashKeyRange"]["StartingHashKey"]), int(s0["HashKeyRange"]["EndingHashKey"])
    k.split_shard(StreamName="orders", ShardToSplit=s0["ShardId"], NewStartingHashKey=str((lo + hi) // 2))
    assert k.describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert len(open_shards(k, "orders")) == 3
    p.wait_calls(5)

    # Merge the first two open shards (the AWS CLI).
    a, b = open_shards(k, "orders")[:2]
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "PATH": os.environ["PATH"]}
    r = subprocess.run(["aws", "--endpoint-url", h.url, "kinesis", "merge-shards", "--stream-name", "orders",
                        "--shard-to-merge", a["ShardId"], "--adjacent-shard-to-merge", b["ShardId"]],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(open_shards(k, "orders")) == 2
    p.wait_calls(5)

    # Uniform scaling up to double, then down to half (boto3).
    r = k.update_shard_count(StreamName="orders", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert (r["CurrentShardCount"], r["TargetShardCount"]) == (2, 4)
    ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in open_shards(k, "orders")]
    assert len(ranges) == 4 and all(abs((e - s) - HASH_MAX // 4) <= 4 for s, e in ranges), "four equal ranges"
    p.wait_calls(5)
    k.update_shard_count(StreamName="orders", TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    assert len(open_shards(k, "orders")) == 3
    p.wait_calls(5)
    acked = p.finish()
    assert len(acked) > 25 * len(KEYS)

    shards, got = read_back(k, "orders")
    check_tiling_and_lineage(shards)
    assert_once_in_key_order(got, acked)
    assert k.describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]["OpenShardCount"] == 3

    # After a restart the shards, their lineage and every record are as they were.
    h.kill()
    h.start()
    k = h.kinesis()
    shards2, got2 = read_back(k, "orders")
    assert shards2 == shards and got2 == got
    k.put_record(StreamName="orders", Data=b"{}", PartitionKey="after-restart")


def test_bad_reshard_requests_get_kinesis_exceptions(hydrant_factory):
    h = hydrant_factory("kinesis:\n  shards_max: 7\n  scalings_per_day_max: 2\n").start()
    k = h.kinesis()
    create(k, "s", 2)
    s0, s1 = k.list_shards(StreamName="s")["Shards"]
    start0 = int(s0["HashKeyRange"]["StartingHashKey"])
    end0 = int(s0["HashKeyRange"]["EndingHashKey"])
    assert error_code(lambda: k.split_shard(StreamName="s", ShardToSplit=s0["ShardId"], NewStartingHashKey=str(start0)))[0] == "InvalidArgumentException"
    assert error_code(lambda: k.split_shard(StreamName="s", ShardToSplit=s0["ShardId"], NewStartingHashKey=str(end0 + 1)))[0] == "InvalidArgumentException"
    assert error_code(lambda: k.split_shard(StreamName="s", ShardToSplit="shardId-000000000009", NewStartingHashKey="5"))[0] == "ResourceNotFoundException"
    assert error_code(lambda: k.split_shard(StreamName="missing", ShardToSplit=s0["ShardId"], NewStartingHashKey="5"))[0] == "ResourceNotFoundException"
    assert error_code(lambda: k.split_shard(StreamName="s", ShardToSplit=s0["ShardId"], NewStartingHashKey="12x"))[0] == "ValidationException"
    assert error_code(lambda: k.merge_shards(StreamName="s", ShardToMerge=s0["ShardId"], AdjacentShardToMerge=s0["ShardId"]))[0] == "InvalidArgumentException"
    assert error_code(lambda: k.update_shard_count(StreamName="s", TargetShardCount=5, ScalingType="UNIFORM_SCALING"))[0] == "InvalidArgumentException"
    assert error_code(lambda: k.update_shard_count(StreamName="s", TargetShardCount=2, ScalingType="SOMETHING"))[0] == "ValidationException"

    k.split_shard(StreamName="s", ShardToSplit=s0["ShardId"], NewStartingHashKey=str((start0 + end0) // 2))
    # The parent is closed: neither split nor merged again.
    code, msg = error_code(lambda: k.split_shard(StreamName="s", ShardToSplit=s0["ShardId"], NewStartingHashKey=str(start0 + 10)))
    assert code == "InvalidArgumentException" and "merged or split" in msg
    children = [s["ShardId"] for s in open_shards(k, "s")]
    assert children == ["shardId-000000000002", "shardId-000000000003", s1["ShardId"]]
    # Not adjacent: the lower child and the last shard.
    assert error_code(lambda: k.merge_shards(StreamName="s", ShardToMerge=children[0], AdjacentShardToMerge=children[2]))[0] == "InvalidArgumentException"
    # Below half of the 3 open shards.
    assert error_code(lambda: k.update_shard_count(StreamName="s", TargetShardCount=1, ScalingType="UNIFORM_SCALING"))[0] == "InvalidArgumentException"
    k.update_shard_count(StreamName="s", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    # Over the account's shard limit (kinesis.shards_max: 7).
    code, msg = error_code(lambda: k.update_shard_count(StreamName="s", TargetShardCount=8, ScalingType="UNIFORM_SCALING"))
    assert code == "LimitExceededException" and "shards_max" in msg, msg
    k.update_shard_count(StreamName="s", TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    # Two scalings a day (kinesis.scalings_per_day_max: 2).
    code, msg = error_code(lambda: k.update_shard_count(StreamName="s", TargetShardCount=4, ScalingType="UNIFORM_SCALING"))
    assert code == "LimitExceededException" and "24 hours" in msg, msg

    # An ON_DEMAND stream is not resharded by hand until it is PROVISIONED.
    k.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    od = open_shards(k, "od")
    assert error_code(lambda: k.merge_shards(StreamName="od", ShardToMerge=od[0]["ShardId"], AdjacentShardToMerge=od[1]["ShardId"]))[0] == "InvalidArgumentException"
    arn = k.describe_stream_summary(StreamName="od")["StreamDescriptionSummary"]["StreamARN"]
    k.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert k.describe_stream_summary(StreamName="od")["StreamDescriptionSummary"]["StreamModeDetails"]["StreamMode"] == "PROVISIONED"
    k.merge_shards(StreamName="od", ShardToMerge=od[0]["ShardId"], AdjacentShardToMerge=od[1]["ShardId"])
    assert len(open_shards(k, "od")) == 3
    assert error_code(lambda: k.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"}))[0] == "InvalidArgumentException"


def test_closed_shards_end_with_their_children_and_list_by_every_filter(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    create(k, "f", 1)
    for i in range(20):
        k.put_record(StreamName="f", Data=json.dumps({"k": "a", "i": i}).encode(), PartitionKey=f"p{i}")
    # Timestamps go over the wire in whole seconds: keep them a second apart.
    time.sleep(1.2)
    before = time.time()
    time.sleep(1.2)
    k.split_shard(StreamName="f", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    time.sleep(1.2)
    after = time.time()
    k.put_record(StreamName="f", Data=b"late", PartitionKey="late")

    d = k.describe_stream(StreamName="f")["StreamDescription"]
    parent = d["Shards"][0]
    assert parent["ShardId"] == "shardId-000000000000" and "EndingSequenceNumber" in parent["SequenceNumberRange"]
    assert [s.get("ParentShardId") for s in d["Shards"][1:]] == ["shardId-000000000000"] * 2
    recs, children = read_whole_shard(k, "f", "shardId-000000000000")
    assert [json.loads(r["Data"])["i"] for r in recs] == list(range(20))
    assert recs[-1]["SequenceNumber"] == parent["SequenceNumberRange"]["EndingSequenceNumber"]
    assert sorted(c["ShardId"] for c in children) == ["shardId-000000000001", "shardId-000000000002"]
    assert all(c["ParentShards"] == ["shardId-000000000000"] for c in children)
    # LATEST on the closed shard: nothing more, straight to the children.
    it = k.get_shard_iterator(StreamName="f", ShardId="shardId-000000000000", ShardIteratorType="LATEST")["ShardIterator"]
    r = k.get_records(ShardIterator=it)
    assert r["Records"] == [] and "NextShardIterator" not in r and len(r["ChildShards"]) == 2

    ids = lambda **f: sorted(s["ShardId"] for s in list_shards(k, "f", **({"ShardFilter": f} if f else {})))
    everything = ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    assert ids() == everything
    assert ids(Type="FROM_TRIM_HORIZON") == everything
    assert ids(Type="AT_TRIM_HORIZON") == ["shardId-000000000000"]
    assert ids(Type="AT_LATEST") == everything[1:]
    assert ids(Type="AFTER_SHARD_ID", ShardId="shardId-000000000000") == everything[1:]
    assert ids(Type="AT_TIMESTAMP", Timestamp=before) == ["shardId-000000000000"]
    assert ids(Type="AT_TIMESTAMP", Timestamp=after) == everything[1:]
    assert ids(Type="FROM_TIMESTAMP", Timestamp=before) == everything
    assert ids(Type="FROM_TIMESTAMP", Timestamp=after) == everything[1:]
    assert error_code(lambda: k.list_shards(StreamName="f", ShardFilter={"Type": "AT_TIMESTAMP"}))[0] == "InvalidArgumentException"
    assert error_code(lambda: k.list_shards(StreamName="f", ShardFilter={"Type": "AFTER_SHARD_ID"}))[0] == "InvalidArgumentException"


def test_a_reshard_cut_short_by_a_crash_leaves_the_old_shards(hydrant_factory):
    h = hydrant_factory("", env={"HYDRANT_FAILPOINT": "reshard-before-persist"}).start()
    k = h.kinesis()
    create(k, "c", 2)
    acked = []
    for i in range(50):
        r = k.put_record(StreamName="c", Data=json.dumps({"k": "x", "i": i}).encode(), PartitionKey=KEYS[i % len(KEYS)])
        acked.append(r["SequenceNumber"])
    with pytest.raises((botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
        k.split_shard(StreamName="c", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
    h.proc.wait(30)
    assert h.proc.returncode != 0, "the failpoint aborted the daemon"
    del h.env["HYDRANT_FAILPOINT"]
    h.start()
    k = h.kinesis()
    shards = list_shards(k, "c")
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]
    assert all("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in shards)
    seqs = [r["SequenceNumber"] for s in shards for r in read_whole_shard(k, "c", s["ShardId"])[0]]
    assert sorted(seqs) == sorted(acked)
    # The parent takes records again, and the split can be done now.
    k.put_record(StreamName="c", Data=b"{}", PartitionKey="again", ExplicitHashKey="0")
    k.split_shard(StreamName="c", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
    assert [s["ShardId"] for s in open_shards(k, "c")] == ["shardId-000000000002", "shardId-000000000003", "shardId-000000000001"]


def test_a_delivery_stream_reads_parents_before_children_across_a_sigkill(hydrant_factory):
    receiver = Receiver()
    config = f"""kinesis:
  streams:
    orders: {{ shards: 2 }}
streams:
  orders-out:
    source: {{ kinesis_stream: orders }}
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    uploads_in_flight_max: 1
    destination:
      type: http
      url: {receiver.url}
      access_key: secret-key
"""
    h = hydrant_factory(config, env={"HYDRANT_FAILPOINT": "reshard-before-persist"}).start()
    k = h.kinesis()
    acked = set()

    def put_round(i):
        r = k.put_records(StreamName="orders", Records=[
            {"Data": json.dumps({"k": key, "i": i}).encode(), "PartitionKey": key} for key in KEYS])
        assert r["FailedRecordCount"] == 0
        acked.update((key, i) for key in KEYS)

    # The endpoint refuses the first records (0-9): they stay with the parents.
    receiver.accept = lambda records: all(json.loads(r)["i"] >= 10 for r in records)
    for i in range(10):
        put_round(i)
    # A split cut short by a crash mid-reshard, then done after the restart.
    with pytest.raises((botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
        k.split_shard(StreamName="orders", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
    h.proc.wait(30)
    del h.env["HYDRANT_FAILPOINT"]
    h.start()
    k = h.kinesis()
    k.split_shard(StreamName="orders", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126))
    # Records 10-19 of the split shard's keys land in its children, which the
    # endpoint would take: they must wait for their parent all the same.
    for i in range(10, 20):
        put_round(i)
    time.sleep(4)
    assert receiver.records == [], "a child was delivered before its parent"
    # SIGKILL with the children waiting; after the restart everything flows.
    h.kill()
    h.start()
    k = h.kinesis()
    receiver.accept = None
    for i in range(20, 30):
        put_round(i)
    p = Producer(h.kinesis, "orders", pace=0.05)
    p.next = {key: 30 for key in KEYS}
    p.start()
    p.wait_calls(20)
    a, b = open_shards(k, "orders")[:2]
    k.merge_shards(StreamName="orders", ShardToMerge=a["ShardId"], AdjacentShardToMerge=b["ShardId"])
    p.wait_calls(20)
    k.update_shard_count(StreamName="orders", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    p.wait_calls(20)
    acked |= p.finish()

    def delivered():
        got = {(d["k"], d["i"]) for d in map(json.loads, list(receiver.records))}
        return got if acked <= got else None

    wait_until(delivered, timeout=120, what="every acknowledged record at the receiver")
    assert receiver.violations == []
    # In arrival order, each key's records first arrive in the order they
    # were put (a crash may deliver some twice, never one before its
    # predecessors).
    seen, last = set(), {}
    for doc in map(json.loads, list(receiver.records)):
        rec = (doc["k"], doc["i"])
        if rec in seen:
            continue
        seen.add(rec)
        assert doc["i"] > last.get(doc["k"], -1), f"{rec} arrived after {last.get(doc['k'])}"
        last[doc["k"]] = doc["i"]
    receiver.close()


def test_an_on_demand_stream_splits_a_shard_kept_over_its_write_limit(hydrant_factory):
    h = hydrant_factory("kinesis:\n  on_demand_split_secs: 5\n").start()
    k = h.kinesis()
    k.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert len(open_shards(k, "od")) == 4
    # One partition key, far over 1,000 records/s, until the stream splits.
    acked = set()
    i = 0
    deadline = time.time() + 60
    while time.time() < deadline and len(open_shards(k, "od")) == 4:
        batch = [(KEYS[0], i + j) for j in range(500)]
        r = k.put_records(StreamName="od", Records=[
            {"Data": json.dumps({"k": key, "i": n}).encode(), "PartitionKey": key} for key, n in batch])
        acked.update(x for x, res in zip(batch, r["Records"]) if "SequenceNumber" in res)
        i += 500
    shards = list_shards(k, "od")
    assert len(open_shards(k, "od")) >= 5, "the hot shard was split"
    closed = [s for s in shards if "EndingSequenceNumber" in s["SequenceNumberRange"]]
    assert closed, "a parent closed"
    check_tiling_and_lineage(shards)
    _, got = read_back(k, "od")
    assert_once_in_key_order(got, acked)
    assert h.metric("kinesis_reshards", stream="od") >= 1
