"""End to end: real AWS clients put records into the real daemon, which
delivers them to Garage (S3) or the local filesystem."""

import gzip
import json
import re
import subprocess
import time

import pytest

from conftest import s3_store_yaml
from harness import read_objects, records_in, wait_for_lines

KEY_RE = r"^logs/\d{4}/\d{2}/\d{2}/\d{2}/app-\d+-\d{20}-\d{20}\.gz$"


def stream_yaml(dest: str, interval=2, compression="gzip", size_mb=1, shards=2) -> str:
    return f"""streams:
  app:
    shards: {shards}
    buffering: {{ size_mb: {size_mb}, interval_secs: {interval} }}
    compression: {compression}
    destination:
{dest}"""


@pytest.fixture(params=["s3", "file"])
def destination(request, garage, tmp_path):
    """(yaml for the stream's destination, read() -> {key: bytes})."""
    if request.param == "s3":
        bucket = f"e2e-{int(time.time() * 1000) % 10**9}"
        garage.create_bucket(bucket)
        s3 = garage.s3()
        yaml = s3_store_yaml(garage) + stream_yaml(f"      type: s3\n      bucket: {bucket}\n      prefix: logs/\n")
        return yaml, lambda: read_objects(s3, bucket)
    out = tmp_path / "out"
    yaml = stream_yaml(f"      type: file\n      path: {out}\n      prefix: logs/\n")
    return yaml, lambda: read_objects(None, out)


def test_boto3_20000_records_arrive_exactly_once(hydrant_factory, destination):
    yaml, read = destination
    h = hydrant_factory(yaml).start()
    fh = h.firehose()
    sent = []
    for batch in range(40):
        records = []
        for i in range(500):
            rid = batch * 500 + i
            sent.append(rid)
            records.append({"Data": json.dumps({"id": rid, "msg": "x" * 100}).encode()})
        r = fh.put_record_batch(DeliveryStreamName="app", Records=records)
        assert r["FailedPutCount"] == 0
        assert len(r["RequestResponses"]) == 500
        assert all("RecordId" in x for x in r["RequestResponses"])

    lines = wait_for_lines(read, 20_000, timeout=60)
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == 20_000, f"{len(ids) - len(set(ids))} duplicates"
    assert sorted(ids) == sent
    objects = read()
    assert all(re.match(KEY_RE, k) for k in objects), list(objects)[:5]
    # size_mb: 1 with ~120-byte records: several objects, none far over the hint.
    assert len(objects) >= 2
    assert all(len(gzip.decompress(b)) <= 1 << 20 for b in objects.values())
    assert h.metric("delivery_records", stream="app") == 20_000
    assert h.terminate() == 0


def test_aws_cli_put_record_and_batch(hydrant_factory, tmp_path):
    out = tmp_path / "out"
    h = hydrant_factory(stream_yaml(f"      type: file\n      path: {out}\n", interval=1, compression="none")).start()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "PATH": __import__("os").environ["PATH"]}
    base = ["aws", "--endpoint-url", h.url, "firehose"]
    r = subprocess.run(base + ["put-record", "--delivery-stream-name", "app", "--record", json.dumps({"Data": '{"from":"cli"}'})], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["RecordId"]
    batch = json.dumps([{"Data": json.dumps({"from": "cli-batch", "n": i})} for i in range(3)])
    r = subprocess.run(base + ["put-record-batch", "--delivery-stream-name", "app", "--records", batch], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["FailedPutCount"] == 0
    r = subprocess.run(base + ["list-delivery-streams"], capture_output=True, text=True, env=env, timeout=60)
    assert json.loads(r.stdout)["DeliveryStreamNames"] == ["app"]
    lines = wait_for_lines(lambda: read_objects(None, out), 4, timeout=30)
    got = sorted(json.loads(x)["from"] for x in lines)
    assert got == ["cli", "cli-batch", "cli-batch", "cli-batch"]


def test_sigterm_flushes_open_batches(hydrant_factory, tmp_path):
    out = tmp_path / "out"
    h = hydrant_factory(stream_yaml(f"      type: file\n      path: {out}\n", interval=900, size_mb=128)).start()
    fh = h.firehose()
    fh.put_record_batch(DeliveryStreamName="app", Records=[{"Data": json.dumps({"n": i}).encode()} for i in range(250)])
    time.sleep(0.5)
    assert read_objects(None, out) == {}, "a 900 s buffer must not flush early"
    assert h.terminate() == 0
    lines = records_in(read_objects(None, out))
    assert sorted(json.loads(x)["n"] for x in lines) == list(range(250))
    assert "shutdown complete" in h.logs()
    # Everything delivered: the next start has no backlog to deliver again.
    h.start()
    time.sleep(1)
    assert len(records_in(read_objects(None, out))) == 250
    assert h.metric("backlog_records", stream="app") == 0


def test_ndjson_endpoint(hydrant_factory, tmp_path):
    out = tmp_path / "out"
    h = hydrant_factory(stream_yaml(f"      type: file\n      path: {out}\n", interval=1, compression="none")).start()
    status, body, _ = h.post("/v1/streams/app/records", b'{"a":1}\n{"a":2}\n\n{"a":3}')
    assert status == 200, body
    assert json.loads(body)["accepted"] == 3
    status, body, _ = h.post("/v1/streams/app/records", b'{"b":1}\n{"b":2}\nnot json\n{"b":4}\n')
    assert status == 400
    err = json.loads(body)
    assert err["line"] == 3 and "line 3" in err["error"]
    status, body, _ = h.post("/v1/streams/nope/records", b'{"a":1}\n')
    assert status == 404
    wait_for_lines(lambda: read_objects(None, out), 3, timeout=30)
    time.sleep(1.5)
    lines = records_in(read_objects(None, out))
    assert sorted(lines) == ['{"a":1}', '{"a":2}', '{"a":3}'], "nothing from the rejected request may be written"
    assert h.metric("incoming_records", stream="app") == 3


def test_embedded_default_needs_no_config(tmp_path):
    """`hydrant run` with no config: log in ./hydrant-data, stream `default`
    delivering JSON lines to ./hydrant-data/out."""
    import os
    import signal

    from harness import free_port, hydrant_bin
    import boto3
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([hydrant_bin(), "run", "--listen", f"127.0.0.1:{port}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy():
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                return r.status == 200

        from harness import wait_until
        wait_until(healthy, timeout=30, what="embedded default /health")
        fh = boto3.client("firehose", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        fh.put_record_batch(DeliveryStreamName="default", Records=[{"Data": b'{"hello":"world"}'}, {"Data": b'{"n":2}\n'}])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = tmp_path / "hydrant-data" / "out"
    lines = records_in(read_objects(None, out))
    assert sorted(lines) == ['{"hello":"world"}', '{"n":2}']
    keys = list(read_objects(None, out))
    assert re.match(r"^\d{4}/\d{2}/\d{2}/\d{2}/default-\d+-\d{20}-\d{20}$", keys[0]), keys
    assert (tmp_path / "hydrant-data" / "streams" / "default").is_dir()
    assert not os.path.exists(tmp_path / "hydrant-data" / "out" / ".tmp")
