"""Encryption at rest: records sealed in the log, never on disk in clear,
switched on and off through the Firehose and Kinesis APIs while producers
send, and a missing or wrong key refused at start."""

import base64
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import s3_store_yaml
from harness import Receiver, error_code, hydrant_bin, read_objects, records_in, wait_until


@pytest.fixture
def receiver():
    r = Receiver(access_key="secret-key")
    yield r
    r.close()


def files_containing(root: Path, needle: bytes) -> list:
    """Every file under `root` whose bytes contain `needle`."""
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def key_file(tmp_path, name, byte) -> Path:
    p = tmp_path / f"{name}.key"
    p.write_text(bytes([byte]).hex() * 32)
    return p


def records_from(kinesis, stream, shard_count):
    out = []
    for i in range(shard_count):
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=f"shardId-{i:012d}",
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = kinesis.get_records(ShardIterator=it, Limit=10000)
            out += r["Records"]
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return out


def test_a_marker_is_delivered_intact_and_no_file_under_the_data_directory_holds_it(
        hydrant_factory, garage, bucket, receiver, tmp_path):
    k1 = key_file(tmp_path, "k1", 0x11)
    marker = f"MARKER-{uuid.uuid4().hex}"
    receiver.mode = "500"
    cfg = s3_store_yaml(garage) + f"""log:
  keys:
    - {{ id: k1, file: {k1} }}
kinesis:
  streams:
    orders: {{ shards: 2, log_encryption: {{}} }}
streams:
  app:
    shards: 2
    log_encryption: {{ key: k1 }}
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    destination: {{ type: s3, bucket: {bucket}, prefix: logs/ }}
  failing:
    shards: 1
    log_encryption: {{}}
    retry_duration_secs: 1
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    destination: {{ type: http, url: {receiver.url}, access_key: secret-key, timeout_secs: 1 }}
"""
    h = hydrant_factory(cfg).start()
    fh, ks = h.firehose(), h.kinesis()
    sent = [json.dumps({"n": i, "msg": f"{marker}-{i}"}) for i in range(200)]
    for i in range(0, 200, 50):
        r = fh.put_record_batch(DeliveryStreamName="app",
                                Records=[{"Data": (x + "\n").encode()} for x in sent[i:i + 50]])
        assert r["FailedPutCount"] == 0
    r = fh.put_record_batch(DeliveryStreamName="failing",
                            Records=[{"Data": f"{marker}-failing-{i}".encode()} for i in range(5)])
    assert r["FailedPutCount"] == 0
    put = ks.put_record(StreamName="orders", Data=f"{marker}-kinesis".encode(), PartitionKey=f"pk-{marker}")
    assert put["EncryptionType"] == "KMS"
    s = ks.describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]
    assert (s["EncryptionType"], s["KeyId"]) == ("KMS", "k1")
    d = fh.describe_delivery_stream(DeliveryStreamName="app")["DeliveryStreamDescription"]
    assert d["DeliveryStreamEncryptionConfiguration"]["Status"] == "ENABLED"
    assert d["DeliveryStreamEncryptionConfiguration"]["KeyType"] == "CUSTOMER_MANAGED_CMK"
    assert d["DeliveryStreamEncryptionConfiguration"]["KeyARN"].endswith(":key/k1")

    s3 = garage.s3()
    got = wait_until(lambda: (lambda x: x if len(x) >= 200 else None)(records_in(read_objects(s3, bucket, "logs/"))),
                     timeout=60, what="200 delivered records")
    assert sorted(got) == sorted(sent), "delivered records differ from what was sent"
    recs = records_from(ks, "orders", 2)
    assert [(r["Data"], r["PartitionKey"]) for r in recs] == [(f"{marker}-kinesis".encode(), f"pk-{marker}")]

    # The failing stream's records reach its error output, sealed with the
    # log's key, and `hydrant decrypt` opens them.
    errors = h.data_dir / "errors" / "failing"
    wait_until(lambda: sum(1 for p in errors.rglob("*.enc")) >= 1 if errors.exists() else False,
               timeout=60, what="an encrypted error output object")
    assert all(p.name.endswith(".enc") for p in errors.rglob("*") if p.is_file())
    opened = []
    for p in errors.rglob("*.enc"):
        out = subprocess.run([hydrant_bin(), "decrypt", "--config", str(h.config), str(p)],
                             capture_output=True, check=True)
        opened += [base64.b64decode(json.loads(line)["rawData"]).decode() for line in out.stdout.decode().splitlines()]
    assert sorted(opened) == sorted(f"{marker}-failing-{i}" for i in range(5))

    time.sleep(1.0)
    assert h.terminate() == 0
    leaked = files_containing(h.data_dir, marker.encode())
    assert leaked == [], f"the marker is on disk in clear: {leaked}"
    # And it is on disk sealed: the log holds the stream's records.
    assert sum(p.stat().st_size for p in (h.data_dir / "streams" / "app").rglob("*.seg")) > 200 * 40


def producer(make, stop, acked, put):
    c = make()
    n = 0
    while not stop.is_set():
        batch = [f"r-{n + i}" for i in range(20)]
        n += 20
        try:
            ok = put(c, batch)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            time.sleep(0.05)
            continue
        acked.update(x for x, good in zip(batch, ok) if good)
        time.sleep(0.01)


def test_start_and_stop_encryption_through_boto3_while_producers_send_loses_nothing(hydrant_factory, garage, bucket):
    h = hydrant_factory(s3_store_yaml(garage) + "kinesis:\n  streams:\n    events: { shards: 2 }\n").start()
    fh, ks = h.firehose(), h.kinesis()
    fh.create_delivery_stream(
        DeliveryStreamName="api",
        ExtendedS3DestinationConfiguration={
            "BucketARN": f"arn:aws:s3:::{bucket}", "RoleARN": "arn:aws:iam::000000000000:role/x",
            "Prefix": "api/", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1}})

    def put_fh(c, batch):
        r = c.put_record_batch(DeliveryStreamName="api", Records=[{"Data": (x + "\n").encode()} for x in batch])
        return ["RecordId" in x for x in r["RequestResponses"]]

    def put_ks(c, batch):
        r = c.put_records(StreamName="events", Records=[{"Data": x.encode(), "PartitionKey": x} for x in batch])
        return ["SequenceNumber" in x for x in r["Records"]]

    stop, fh_acked, ks_acked = threading.Event(), set(), set()
    threads = [threading.Thread(target=producer, args=(h.firehose, stop, fh_acked, put_fh)),
               threading.Thread(target=producer, args=(h.kinesis, stop, ks_acked, put_ks))]
    for t in threads:
        t.start()
    statuses = []
    for _ in range(3):
        time.sleep(0.7)
        fh.start_delivery_stream_encryption(
            DeliveryStreamName="api", DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})
        ks.start_stream_encryption(StreamName="events", EncryptionType="KMS", KeyId="alias/aws/kinesis")
        statuses.append((
            fh.describe_delivery_stream(DeliveryStreamName="api")["DeliveryStreamDescription"]
            ["DeliveryStreamEncryptionConfiguration"],
            ks.describe_stream(StreamName="events")["StreamDescription"].get("KeyId")))
        time.sleep(0.7)
        fh.stop_delivery_stream_encryption(DeliveryStreamName="api")
        ks.stop_stream_encryption(StreamName="events", EncryptionType="KMS", KeyId="alias/aws/kinesis")
        statuses.append((
            fh.describe_delivery_stream(DeliveryStreamName="api")["DeliveryStreamDescription"]
            ["DeliveryStreamEncryptionConfiguration"],
            ks.describe_stream(StreamName="events")["StreamDescription"].get("KeyId")))
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert statuses[0] == ({"KeyType": "AWS_OWNED_CMK", "Status": "ENABLED"}, "alias/aws/kinesis")
    assert statuses[1] == ({"Status": "DISABLED"}, None)
    assert len(fh_acked) > 200 and len(ks_acked) > 200

    s3 = garage.s3()
    wait_until(lambda: set(records_in(read_objects(s3, bucket, "api/"))) >= fh_acked, timeout=60,
               what="every acknowledged Firehose record delivered")
    got = [r["Data"].decode() for r in records_from(ks, "events", 2)]
    assert set(got) >= ks_acked and len(got) == len(set(got))

    # Bad input names the field and the reason.
    code, msg = error_code(lambda: ks.start_stream_encryption(StreamName="events", EncryptionType="KMS", KeyId="nope"))
    assert (code, "`nope`" in msg) == ("KMSNotFoundException", True), msg
    code, msg = error_code(lambda: fh.start_delivery_stream_encryption(
        DeliveryStreamName="api", DeliveryStreamEncryptionConfigurationInput={
            "KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": "arn:aws:kms:us-east-1:000000000000:key/nope"}))
    assert (code, "`nope`" in msg) == ("InvalidKMSResourceException", True), msg
    code, msg = error_code(lambda: fh.start_delivery_stream_encryption(
        DeliveryStreamName="api", DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK"}))
    assert (code, "KeyARN" in msg) == ("InvalidArgumentException", True), msg
    code, _ = error_code(lambda: ks.start_stream_encryption(
        StreamName="missing", EncryptionType="KMS", KeyId="alias/aws/kinesis"))
    assert code == "ResourceNotFoundException"

    # The setting survives a restart, and the stream's records stay readable.
    fh.start_delivery_stream_encryption(DeliveryStreamName="api")
    ks.start_stream_encryption(StreamName="events", EncryptionType="KMS", KeyId="alias/aws/kinesis")
    assert h.terminate() == 0
    h.start()
    d = h.firehose().describe_delivery_stream(DeliveryStreamName="api")["DeliveryStreamDescription"]
    assert d["DeliveryStreamEncryptionConfiguration"] == {"KeyType": "AWS_OWNED_CMK", "Status": "ENABLED"}
    assert h.kinesis().describe_stream_summary(StreamName="events")["StreamDescriptionSummary"]["EncryptionType"] == "KMS"
    assert sorted(r["Data"].decode() for r in records_from(h.kinesis(), "events", 2)) == sorted(got)
    key = h.data_dir / "keys" / "builtin.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_sigkill_after_acknowledgement_keeps_every_sealed_record_readable(hydrant_factory, tmp_path):
    k1 = key_file(tmp_path, "k1", 0x21)
    out = tmp_path / "out"
    cfg = f"""log:
  keys:
    - {{ id: k1, file: {k1} }}
kinesis:
  streams:
    orders: {{ shards: 1, log_encryption: {{}} }}
streams:
  app:
    shards: 2
    log_encryption: {{}}
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    destination: {{ type: file, path: {out} }}
"""
    h = hydrant_factory(cfg).start()
    stop, fh_acked, ks_acked = threading.Event(), set(), set()

    def put_fh(c, batch):
        r = c.put_record_batch(DeliveryStreamName="app", Records=[{"Data": (x + "\n").encode()} for x in batch])
        return ["RecordId" in x for x in r["RequestResponses"]]

    def put_ks(c, batch):
        r = c.put_records(StreamName="orders", Records=[{"Data": x.encode(), "PartitionKey": x} for x in batch])
        return ["SequenceNumber" in x for x in r["Records"]]

    threads = [threading.Thread(target=producer, args=(h.firehose, stop, fh_acked, put_fh)),
               threading.Thread(target=producer, args=(h.kinesis, stop, ks_acked, put_ks))]
    for t in threads:
        t.start()
    for _ in range(2):
        time.sleep(1.0)
        h.kill()
        h.start()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(fh_acked) > 100 and len(ks_acked) > 100
    wait_until(lambda: set(records_in(read_objects(None, out))) >= fh_acked, timeout=60,
               what="every acknowledged record delivered after SIGKILL")
    got = {r["Data"].decode() for r in records_from(h.kinesis(), "orders", 1)}
    assert got >= ks_acked
    assert "sealed record" not in h.logs()


@pytest.mark.parametrize("change", ["missing", "wrong"])
def test_a_missing_or_wrong_key_stops_the_daemon_at_start_and_reads_no_garbage(hydrant_factory, tmp_path, change):
    k1 = key_file(tmp_path, "k1", 0x31)
    out = tmp_path / "out"
    body = """streams:
  app:
    shards: 1
    log_encryption: {{ key: {stream_key} }}
    buffering: {{ size_mb: 1, interval_secs: 900 }}
    destination: {{ type: file, path: {out} }}
"""
    cfg = f"log:\n  keys:\n    - {{ id: k1, file: {k1} }}\n" + body.format(stream_key="k1", out=out)
    h = hydrant_factory(cfg).start()
    r = h.firehose().put_record_batch(DeliveryStreamName="app", Records=[{"Data": b"sealed-one\n"}])
    assert r["FailedPutCount"] == 0
    h.kill()  # still in the log, not delivered
    if change == "missing":
        k2 = key_file(tmp_path, "k2", 0x32)
        new = f"log:\n  keys:\n    - {{ id: k2, file: {k2} }}\n" + body.format(stream_key="k2", out=out)
        expect = "`k1`"
    else:
        k1.write_text(bytes([0x99]).hex() * 32)
        new = cfg
        expect = "check value"
    h.config.write_text(f"listen: 127.0.0.1:{h.port}\ndata_dir: {h.data_dir}\n" + new)
    p = subprocess.run([hydrant_bin(), "run", "-c", str(h.config)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "HYDRANT_LOG": "info"})
    assert p.returncode != 0
    assert expect in p.stderr + p.stdout, (p.stderr + p.stdout)[-2000:]
    assert not out.exists() or records_in(read_objects(None, out)) == []
