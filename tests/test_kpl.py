"""KPL aggregation: a delivery stream reading a Kinesis stream takes the
aggregates that `aws_kinesis_agg` (the KPL's format) packs apart into their
user records, as Firehose does, with and without dynamic partitioning; a
corrupt aggregate goes to the error output with its reason; `GetRecords`
still returns the aggregates as they were put."""

import base64
import json
import re
from collections import defaultdict

from aws_kinesis_agg.aggregator import RecordAggregator

from harness import read_objects, wait_until

KEYS = [f"user-{i}" for i in range(10)]


def config(out, lake):
    return f"""kinesis:
  streams:
    events: {{ shards: 2 }}
streams:
  events-out:
    source: {{ kinesis_stream: events }}
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    destination:
      type: file
      path: {out}
      prefix: "data/"
      error_output_prefix: "errors/!{{firehose:error-output-type}}/"
  events-lake:
    source: {{ kinesis_stream: events }}
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    dynamic_partitioning:
      keys: {{ k: .k }}
      open_partitions_max: 3
    destination:
      type: file
      path: {lake}
      prefix: "k=!{{partitionKeyFromQuery:k}}/"
      error_output_prefix: "errors/!{{firehose:error-output-type}}/"
"""


class Sender:
    """Puts aggregates and plain records, and notes what each shard must
    hold: the records as put (for GetRecords) and the user records they
    carry, in order (for the destination)."""

    def __init__(self, k):
        self.k = k
        self.put = defaultdict(list)
        self.lines = defaultdict(list)
        self.next = defaultdict(int)
        self.users = 0

    def user_record(self, key, agg):
        doc = json.dumps({"k": key, "i": self.next[key], "agg": agg}, separators=(",", ":"))
        self.next[key] += 1
        return doc

    def aggregate(self, agg, n):
        """An aggregate of n user records, the keys in turn."""
        a = RecordAggregator()
        docs = [self.user_record(KEYS[(agg + j) % len(KEYS)], agg) for j in range(n)]
        for j, doc in enumerate(docs):
            assert a.add_user_record(KEYS[(agg + j) % len(KEYS)], doc.encode()) is None
        pk, ehk, data = a.clear_and_get().get_contents()
        assert data[:4] == b"\xf3\x89\x9a\xc2"
        entry = {"Data": data, "PartitionKey": pk}
        if ehk:
            entry["ExplicitHashKey"] = ehk
        return entry, docs

    def plain(self, j):
        doc = json.dumps({"k": KEYS[j % len(KEYS)], "plain": j}, separators=(",", ":"))
        return {"Data": doc.encode(), "PartitionKey": f"plain-{j}"}, [doc]

    def send(self, entries):
        """Puts (entry, docs) pairs: one with PutRecord, more with PutRecords."""
        if len(entries) == 1:
            (entry, docs), = entries
            shards = [self.k.put_record(StreamName="events", **entry)["ShardId"]]
        else:
            r = self.k.put_records(StreamName="events", Records=[e for e, _ in entries])
            assert r["FailedRecordCount"] == 0
            shards = [x["ShardId"] for x in r["Records"]]
        for shard, (entry, docs) in zip(shards, entries):
            self.put[shard].append(entry["Data"])
            self.lines[shard].extend(docs)


def corrupt(entry):
    """The aggregate with one byte of its protobuf flipped: its MD5 fails."""
    data = bytearray(entry["Data"])
    data[len(data) // 2] ^= 0x01
    return {**entry, "Data": bytes(data)}, []


def delivered(out, prefix):
    """The lines under `prefix`, per shard, objects in offset order."""
    per_shard = defaultdict(list)
    objects = read_objects(None, out, prefix)
    for key in sorted(objects, key=lambda k: re.search(r"-(\d+)-(\d{20})-\d{20}$", k).groups()):
        shard = int(re.search(r"-(\d+)-\d{20}-\d{20}$", key).group(1))
        per_shard[f"shardId-{shard:012d}"].extend(objects[key].decode().splitlines())
    return objects, per_shard


def error_lines(out):
    return [json.loads(x) for b in read_objects(None, out, "errors/").values() for x in b.decode().splitlines()]


def read_shard(k, shard_id):
    it = k.get_shard_iterator(StreamName="events", ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    while True:
        r = k.get_records(ShardIterator=it, Limit=1000)
        out.extend(x["Data"] for x in r["Records"])
        it = r["NextShardIterator"]
        if not r["Records"] and r["MillisBehindLatest"] == 0:
            return out


def test_aggregates_are_taken_apart_for_delivery_and_left_whole_for_get_records(hydrant_factory, tmp_path):
    out, lake = tmp_path / "out", tmp_path / "lake"
    h = hydrant_factory(config(out, lake)).start()
    k = h.kinesis()
    s = Sender(k)
    aggs = [s.aggregate(a, 150 + 50 * a) for a in range(5)]
    bad = corrupt(s.aggregate(99, 20)[0])
    s.send([aggs[0]])
    s.send([s.plain(0), aggs[1], s.plain(1), aggs[2], bad, s.plain(2)])
    s.send([s.plain(3)])
    s.send([aggs[3], aggs[4]] + [s.plain(j) for j in range(4, 10)])
    users = sum(len(docs) for _, docs in aggs)
    total = users + 10
    assert users == 1250

    def everything(path, prefix):
        objects, per_shard = delivered(path, prefix)
        n = sum(len(v) for v in per_shard.values())
        assert n <= total, f"{n} lines delivered, {total} sent"
        return (objects, per_shard) if n == total and error_lines(path) else None

    # Without partitioning: each shard's objects hold its user records and
    # plain records line for line, in the order they were put.
    _, per_shard = wait_until(lambda: everything(out, "data/"), timeout=60, what="every user record in events-out")
    assert dict(per_shard) == dict(s.lines)
    [err] = error_lines(out)
    assert err["errorCode"] == "processing-failed"
    assert err["errorMessage"] == "KPL aggregate fails its MD5 check"
    assert base64.b64decode(err["rawData"]) == bad[0]["Data"]

    # Partitioned by a field of the user records, three partitions open at
    # most for ten keys: each user record once, under its key, and each
    # key's records in order within its shard.
    objects, per_shard = wait_until(lambda: everything(lake, "k="), timeout=60, what="every user record in events-lake")
    for key, body in objects.items():
        for line in body.decode().splitlines():
            assert key.startswith(f"k={json.loads(line)['k']}/"), (key, line)
    for shard, lines in s.lines.items():
        for user in KEYS:
            want = [x for x in lines if json.loads(x)["k"] == user]
            got = [x for x in per_shard[shard] if json.loads(x)["k"] == user]
            assert got == want, (shard, user)
    assert h.metric("partition_evictions", stream="events-lake") > 0
    [err] = error_lines(lake)
    assert err["errorMessage"] == "KPL aggregate fails its MD5 check"

    # Kinesis consumers get the records as they were put.
    for shard in ["shardId-000000000000", "shardId-000000000001"]:
        assert read_shard(k, shard) == s.put[shard]
    assert h.metric("kpl_user_records", stream="events-out") == users
    assert h.metric("kpl_corrupt_aggregates", stream="events-out") == 1
    assert h.metric("kpl_user_records", stream="events-lake") == users
