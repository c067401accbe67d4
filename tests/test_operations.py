"""Operating the daemon: reload on SIGHUP (`hydrant reload`), `hydrant status`,
`/v1/status`."""

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import botocore.exceptions

from harness import hydrant_bin, read_objects, wait_until


def streams_yaml(out, names, prefix_a="v1/", extra_a="", shards_a=2):
    parts = []
    for n in names:
        prefix = prefix_a if n == "a" else f"{n}/"
        shards = shards_a if n == "a" else 1
        extra = extra_a if n == "a" else ""
        parts.append(f"""  {n}:
    shards: {shards}
    buffering: {{ size_mb: 1, interval_secs: 1 }}
{extra}    destination: {{ type: file, path: {out}, prefix: "{prefix}" }}
""")
    return "streams:\n" + "".join(parts)


def lines(out, prefix):
    return [x for k, b in read_objects(None, out).items() if k.startswith(prefix) for x in b.decode().splitlines() if x]


def reload(h):
    return subprocess.run([hydrant_bin(), "reload", "-c", str(h.config)], capture_output=True, text=True, timeout=60)


def write_config(h, body):
    h.config.write_text(f"listen: 127.0.0.1:{h.port}\ndata_dir: {h.data_dir}\n" + body)


def test_sighup_adds_changes_and_removes_streams_without_losing_a_record(hydrant_factory, tmp_path):
    out = tmp_path / "out"
    h = hydrant_factory(streams_yaml(out, ["a", "b"])).start()
    fh = h.firehose()
    acked, stop = [], threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            recs = [json.dumps({"n": i + j}) for j in range(50)]
            try:
                r = fh.put_record_batch(DeliveryStreamName="a", Records=[{"Data": x.encode()} for x in recs])
                acked.extend(x for x, e in zip(recs, r["RequestResponses"]) if "RecordId" in e)
            except botocore.exceptions.ClientError:
                pass
            i += 50
            time.sleep(0.01)

    t = threading.Thread(target=produce)
    t.start()
    try:
        b_sent = [json.dumps({"b": i}) for i in range(200)]
        assert fh.put_record_batch(DeliveryStreamName="b", Records=[{"Data": x.encode()} for x in b_sent])["FailedPutCount"] == 0

        # An invalid config is refused by `hydrant reload` and by the daemon; nothing changes.
        write_config(h, streams_yaml(out, ["a", "b"]).replace("buffering", "bufferin", 1))
        r = reload(h)
        assert r.returncode == 1 and "streams.a.bufferin: unknown field" in r.stderr, r.stderr
        h.proc.send_signal(1)  # SIGHUP straight to the daemon
        wait_until(lambda: "reload refused" in h.logs(), timeout=20, what="the daemon to refuse the config")
        assert h.healthy()

        # A shard count cannot change on a running log: refused whole.
        write_config(h, streams_yaml(out, ["a", "c"], shards_a=3))
        assert reload(h).returncode == 0
        wait_until(lambda: "streams.a.shards: cannot change from 2 to 3" in h.logs(), timeout=20, what="shards refusal")
        assert fh.describe_delivery_stream(DeliveryStreamName="b")["DeliveryStreamDescription"]["DeliveryStreamName"] == "b"

        # Add c, remove b, change a (new prefix and compression).
        write_config(h, streams_yaml(out, ["a", "c"], prefix_a="v2/", extra_a="    compression: gzip\n"))
        r = reload(h)
        assert r.returncode == 0, r.stderr
        wait_until(lambda: "config reloaded" in h.logs(), timeout=30, what="the reload")
        log = re.sub(r"\x1b\[[0-9;]*m", "", h.logs())
        assert 'added=["c"]' in log and 'removed=["b"]' in log and 'changed=["a"]' in log, log[-3000:]

        assert fh.put_record_batch(DeliveryStreamName="c", Records=[{"Data": b'{"c":1}'}])["FailedPutCount"] == 0
        wait_until(lambda: lines(out, "c/") == ['{"c":1}'], timeout=30, what="the added stream delivering")
        try:
            fh.put_record(DeliveryStreamName="b", Record={"Data": b"x"})
            raise AssertionError("the removed stream still accepts records")
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "ResourceNotFoundException"
        # The removed stream's backlog was delivered before it stopped.
        assert sorted(lines(out, "b/")) == sorted(b_sent)
        time.sleep(1)
    finally:
        stop.set()
        t.join()

    # Every record acknowledged by `a`, before, during and after the reloads, is delivered.
    import gzip

    def delivered_a():
        got = []
        for k, b in read_objects(None, out).items():
            if k.startswith("v1/") or k.startswith("v2/"):
                got.extend(x for x in (gzip.decompress(b) if k.endswith(".gz") else b).decode().splitlines() if x)
        return got if set(got) >= set(acked) else None

    got = wait_until(delivered_a, timeout=60, what=f"{len(acked)} acknowledged records of a")
    assert set(got) >= set(acked) and len(acked) > 500
    assert any(k.startswith("v2/") and k.endswith(".gz") for k in read_objects(None, out)), "the change applies"


def test_status_shows_each_stream(hydrant_factory, tmp_path):
    out = tmp_path / "out"
    h = hydrant_factory(streams_yaml(out, ["a", "b"])).start()
    fh = h.firehose()
    assert fh.put_record_batch(DeliveryStreamName="a", Records=[{"Data": b"{}"}] * 10)["FailedPutCount"] == 0
    wait_until(lambda: len(lines(out, "v1/")) == 10, timeout=30, what="delivery")

    def stream_a():
        s = json.loads(h.get("/v1/status")[1])
        return next(x for x in s["streams"] if x["name"] == "a")

    # The object is visible a moment before its checkpoint is written.
    a = wait_until(lambda: (lambda a: a if a["backlog_records"] == 0 else None)(stream_a()), timeout=10, what="backlog 0")
    assert a["incoming_records"] == 10 and a["last_delivery_ms"] > 0
    assert a["last_error"] is None and a["shards"] == 2
    r = subprocess.run([hydrant_bin(), "status", "-c", str(h.config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert set(rows) == {"a", "b"}
    assert rows["b"][-1] == "-" and "never" in " ".join(rows["b"])
    h.terminate()
    r = subprocess.run([hydrant_bin(), "status", "-c", str(h.config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot reach the daemon" in r.stderr


def test_metrics_add_up_to_what_was_sent_and_delivered(hydrant_factory, tmp_path):
    out = tmp_path / "out"
    h = hydrant_factory(streams_yaml(out, ["a", "b"])).start()
    fh = h.firehose()
    sent = {"a": 0, "b": 0}
    sent_bytes = 0
    seen = []
    for i in range(40):
        name = "a" if i % 3 else "b"
        recs = [json.dumps({"i": i, "j": j, "pad": "x" * (j % 40)}).encode() for j in range(250)]
        assert fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in recs])["FailedPutCount"] == 0
        sent[name] += len(recs)
        sent_bytes += sum(len(r) for r in recs)
        # Scraped during the load: counters never go backwards.
        seen.append(h.metric("incoming_records") + h.metric("delivery_records"))
    assert seen == sorted(seen)
    for name in ("a", "b"):
        assert h.metric("incoming_records", stream=name) == sent[name]
    assert h.metric("incoming_bytes") == sent_bytes
    wait_until(lambda: all(h.metric("delivery_records", stream=n) == sent[n] for n in sent), timeout=60,
               what="every record counted as delivered")
    delivered = {n: len(lines(out, "v1/" if n == "a" else "b/")) for n in sent}
    assert delivered == sent
    wait_until(lambda: h.metric("backlog_records") == 0, timeout=30, what="backlog 0")
    assert h.metric("error_output_records") == 0
    assert h.metric("delivery_success", stream="a") >= 1
    assert h.metric("put_latency_seconds_count") >= 40
    # The 40 puts were sent one after another: each was one group commit.
    assert h.metric("log_sync_seconds_count") == 40
    assert h.metric("log_sync_seconds_sum") > 0
    assert h.metric("process_resident_memory_bytes") > 1e6
    assert h.metric("process_open_fds") > 3 and h.metric("process_threads") >= 2
    assert h.metric("process_start_time_seconds") > 1.7e9


def test_every_example_config_validates():
    from test_transforms import example

    example("rust")  # the redaction example refers to the built component
    root = Path(__file__).resolve().parent.parent
    configs = sorted((root / "config").glob("*.yaml"))
    assert len(configs) >= 7
    env = {**os.environ, "GARAGE_KEY_ID": "GK", "GARAGE_SECRET": "s", "COLLECTOR_KEY": "k", "PGPASSWORD": "p"}
    for c in configs:
        r = subprocess.run([hydrant_bin(), "validate", str(c)], capture_output=True, text=True, timeout=120, cwd=root, env=env)
        assert r.returncode == 0, f"{c.name}: {r.stderr}"


def test_the_logs_to_s3_example_end_to_end(hydrant_factory, garage, tmp_path):
    """config/s3-logs.yaml as shipped, with Garage's address and key."""
    import gzip

    import yaml as pyyaml

    root = Path(__file__).resolve().parent.parent
    cfg = pyyaml.safe_load((root / "config" / "s3-logs.yaml").read_text())
    garage.create_bucket("logs")
    body = (root / "config" / "s3-logs.yaml").read_text()
    body = "\n".join(l for l in body.splitlines() if not l.startswith(("listen:", "data_dir:"))) + "\n"
    body = body.replace("http://127.0.0.1:3900", garage.endpoint).replace("interval_secs: 60", "interval_secs: 1")
    h = hydrant_factory(body, env={"GARAGE_KEY_ID": garage.key_id, "GARAGE_SECRET": garage.secret}).start()
    stream = next(iter(cfg["streams"]))
    sent = [json.dumps({"level": "info", "n": i}) for i in range(1000)]
    fh = h.firehose()
    for i in range(0, 1000, 500):
        assert fh.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": s.encode()} for s in sent[i:i + 500]])["FailedPutCount"] == 0
    s3 = garage.s3()

    def got():
        objs = read_objects(s3, "logs", "app/")
        return [x for b in objs.values() for x in gzip.decompress(b).decode().splitlines()] if objs else []

    assert sorted(wait_until(lambda: (lambda g: g if len(g) >= 1000 else None)(got()), timeout=60, what="1000 records")) == sorted(sent)
    assert all(k.endswith(".gz") for k in read_objects(s3, "logs", "app/"))
