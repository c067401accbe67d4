"""SQL applications (Kinesis Data Analytics) through the real daemon: per-minute
counts over event time from a Kinesis stream into another, compared with counts
computed here, and exactly-once results across SIGKILLs, including one between
the checkpoint and the output append (a test-only failpoint)."""

import json
import random
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone

from harness import hydrant_bin, wait_until

BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
# One hash key in each half of the hash-key range: a record for each of two shards.
SHARD_KEYS = ["1", str(2**127 + 1)]


def app_yaml(starting="trim_horizon"):
    return f"""
kinesis:
  streams:
    trades: {{ shards: 2 }}
    counts: {{ shards: 2 }}
analytics:
  applications:
    per-minute:
      input:
        kinesis_stream: trades
        starting_position: {starting}
        columns:
          - {{ name: TICKER, type: "VARCHAR(8)" }}
          - {{ name: PRICE, type: DOUBLE }}
          - {{ name: EVENT_TIME, type: TIMESTAMP }}
      event_time: {{ max_out_of_order_secs: 0, idle_secs: 600 }}
      sql: |
        CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (TICKER VARCHAR(8), MINUTE_START TIMESTAMP, N BIGINT);
        CREATE OR REPLACE PUMP "COUNTS" AS INSERT INTO "DESTINATION_SQL_STREAM"
          SELECT STREAM ticker, FLOOR(event_time TO MINUTE), COUNT(*)
          FROM "SOURCE_SQL_STREAM_001"
          GROUP BY ticker, FLOOR(event_time TO MINUTE);
      outputs:
        DESTINATION_SQL_STREAM: {{ kinesis_stream: counts, partition_key: TICKER }}
      checkpoint_interval_secs: 1
      output_interval_ms: 100
"""


def trades(n, minutes, seed=7):
    """`n` trades with event times rising through `minutes` minutes, and the
    per-(ticker, minute) counts they make."""
    rnd = random.Random(seed)
    out, expected = [], Counter()
    for i in range(n):
        t = BASE + timedelta(milliseconds=i * minutes * 60_000 // n)
        ticker = rnd.choice(["AMZN", "MSFT", "IBM", "TGT"])
        out.append({"TICKER": ticker, "PRICE": rnd.random() * 100, "EVENT_TIME": t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]})
        expected[(ticker, t.replace(second=0, microsecond=0).strftime("%Y-%m-%d %H:%M:%S.000"))] += 1
    return out, expected


def put_in_order(k, records, stream="trades", shards=(0, 1)):
    """Puts the records in order, alternating over `shards` (by hash key),
    so each shard sees rising event times."""
    for i in range(0, len(records), 100):
        chunk = records[i:i + 100]
        r = k.put_records(StreamName=stream, Records=[
            {"Data": json.dumps(x).encode(), "PartitionKey": "p", "ExplicitHashKey": SHARD_KEYS[shards[j % len(shards)]]}
            for j, x in enumerate(chunk)
        ])
        assert r["FailedRecordCount"] == 0


def close_every_window(k, minute):
    """A record at `minute` on each shard: the watermark passes every earlier
    minute. Its own result (ticker ZZZ) is not compared."""
    t = (BASE + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:%S.000")
    put_in_order(k, [{"TICKER": "ZZZ", "PRICE": 0, "EVENT_TIME": t}] * 2)


def read_all(k, stream):
    """Every record of every shard of `stream`, as parsed JSON."""
    out = []
    for shard in k.list_shards(StreamName=stream)["Shards"]:
        it = k.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            out += [json.loads(x["Data"]) for x in r["Records"]]
            if r.get("MillisBehindLatest", 0) == 0 and not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return out


def results(k):
    return [(r["TICKER"], r["MINUTE_START"], r["N"]) for r in read_all(k, "counts") if r["TICKER"] != "ZZZ"]


def test_per_minute_counts_over_event_time_match_counts_computed_here(hydrant_factory):
    h = hydrant_factory(app_yaml()).start()
    k = h.kinesis()
    records, expected = trades(3000, 5)
    put_in_order(k, records)
    close_every_window(k, 9)
    got = wait_until(lambda: (lambda r: r if len(r) >= len(expected) else None)(results(k)),
                     timeout=60, what="a count per ticker and minute")
    assert Counter({(t, m): n for t, m, n in got}) == expected
    assert len(got) == len(expected), "each result once"
    # Its numbers: metrics, /v1/status and `hydrant status`.
    assert h.metric("analytics_input_records", application="per-minute") == 3002
    assert h.metric("analytics_output_records", application="per-minute") >= len(expected)
    assert h.metric("analytics_late_rows", application="per-minute") == 0
    assert h.metric("analytics_open_windows", application="per-minute") >= 1, "minute 9 is open"
    with urllib.request.urlopen(h.url + "/v1/status", timeout=5) as r:
        apps = json.load(r)["applications"]
    assert [(a["name"], a["state"], a["origin"]) for a in apps] == [("per-minute", "RUNNING", "yaml")]
    out = subprocess.run([hydrant_bin(), "status", "--url", h.url], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "per-minute" in out.stdout and "RUNNING" in out.stdout, out.stdout + out.stderr
    # The output is the application's alone.
    try:
        k.put_record(StreamName="counts", Data=b"x", PartitionKey="x")
        raise AssertionError("a put to an application's output was accepted")
    except k.exceptions.InvalidArgumentException as e:
        assert "per-minute" in str(e)


def crash_and_count(h, records, expected, first):
    """Runs `h` (started with the failpoint between checkpoint and append
    armed) through the crash test: `first` records into one shard (no window
    closes while the other shows no time), a window closed, the abort with
    results checkpointed but not appended; then a restart, more records, three
    SIGKILLs at random moments, the rest, and every window closed. Every
    result must be in the output exactly once."""
    k = h.kinesis()
    put_in_order(k, records[:first], shards=(0,))
    try:
        close_every_window(k, 3)
    except Exception:  # noqa: BLE001 - the answer may be lost to the abort
        pass
    wait_until(lambda: h.proc.poll() is not None, timeout=60, what="the failpoint between checkpoint and append")
    h.env.pop("HYDRANT_FAILPOINT")
    h.start()
    k = h.kinesis()
    middle = (first + len(records)) // 2
    put_in_order(k, records[first:middle])
    for _ in range(3):
        time.sleep(random.uniform(0.2, 1.5))
        h.proc.send_signal(signal.SIGKILL)
        h.proc.wait()
        h.start()
        k = h.kinesis()
    put_in_order(k, records[middle:])
    close_every_window(k, 9)
    wait_until(lambda: len(results(k)) >= len(expected), timeout=90, what="every result")
    time.sleep(2)
    got = results(k)
    assert [key for key, n in Counter((t, m) for t, m, _ in got).items() if n > 1] == [], "a result twice"
    assert Counter({(t, m): n for t, m, n in got}) == expected


def test_every_result_lands_exactly_once_across_sigkills(hydrant_factory):
    records, expected = trades(4000, 6, seed=11)
    h = hydrant_factory(app_yaml(), env={"HYDRANT_FAILPOINT": "analytics.after_checkpoint"}).start()
    crash_and_count(h, records, expected, 2000)


def test_validate_plans_each_application_and_names_its_path(tmp_path):
    bad_sql = app_yaml().replace("COUNT(*)", "COUNT(nope)")
    bad_key = app_yaml().replace("partition_key: TICKER", "partition_key: NOPE")
    for text, want in [
        (bad_sql, "analytics.applications.per-minute: statement 2 (line 3"),
        (bad_key, "analytics.applications.per-minute: outputs.DESTINATION_SQL_STREAM.partition_key: NOPE is not a column"),
        (app_yaml().replace("kinesis_stream: trades\n        starting", "kinesis_stream: trades\n        delivery_stream: x\n        starting"),
         "analytics.applications.per-minute.input: give exactly one of kinesis_stream and delivery_stream"),
    ]:
        f = tmp_path / "a.yaml"
        f.write_text(text)
        r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and want in r.stderr, r.stderr
    f.write_text(app_yaml())
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
