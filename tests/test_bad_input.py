"""Bad input gets the exception a real SDK expects and writes nothing."""

import base64
import json
import subprocess
from pathlib import Path

import botocore.exceptions
import pytest

from harness import hydrant_bin

CONFIG = """streams:
  app:
    shards: 1
    buffering: { size_mb: 1, interval_secs: 1 }
    destination: { type: file, path: OUT }
"""


@pytest.fixture
def daemon(hydrant_factory, tmp_path):
    return hydrant_factory(CONFIG.replace("OUT", str(tmp_path / "out"))).start()


def log_bytes(h) -> int:
    return sum(p.stat().st_size for p in Path(h.data_dir).rglob("*.seg"))


def raw(h, target, body: bytes):
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target:
        headers["X-Amz-Target"] = target
    status, resp, hdrs = h.post("/", body, headers)
    return status, json.loads(resp)


def expect_client_error(call, code):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    assert e.value.response["Error"]["Code"] == code, e.value.response
    return e.value


def test_each_bad_request_is_refused_and_writes_nothing(daemon):
    h = daemon
    fh = h.firehose()
    before = log_bytes(h)

    e = expect_client_error(lambda: fh.put_record_batch(DeliveryStreamName="app", Records=[{"Data": b"x"}] * 501), "InvalidArgumentException")
    assert isinstance(e, fh.exceptions.InvalidArgumentException)
    assert "less than or equal to 500" in str(e)

    # 4 MiB + 1 byte of record data, every record within its own limit.
    big = [{"Data": b"a" * 1_000_000}] * 4 + [{"Data": b"b" * (4 * 1024 * 1024 - 4_000_000 + 1)}]
    e = expect_client_error(lambda: fh.put_record_batch(DeliveryStreamName="app", Records=big), "InvalidArgumentException")
    assert "4 MB" in str(e)

    e = expect_client_error(lambda: fh.put_record(DeliveryStreamName="app", Record={"Data": b"r" * 1_024_001}), "InvalidArgumentException")
    assert "1024000" in str(e)

    e = expect_client_error(lambda: fh.put_record(DeliveryStreamName="nope", Record={"Data": b"x"}), "ResourceNotFoundException")
    assert isinstance(e, fh.exceptions.ResourceNotFoundException)

    e = expect_client_error(lambda: fh.put_record(DeliveryStreamName="bad/name", Record={"Data": b"x"}), "InvalidArgumentException")
    assert "deliveryStreamName" in str(e)

    status, body = raw(h, "Firehose_20150804.PutRecord", b'{"DeliveryStreamName": "app", "Record": {"Data": "not base64!!"}}')
    assert (status, body["__type"]) == (400, "SerializationException"), body
    status, body = raw(h, "Firehose_20150804.PutRecordBatch", b'{"DeliveryStreamName": "app", "Records": [{"Data": "eA=="}, {"Data": "%%%"}]}')
    assert (status, body["__type"]) == (400, "SerializationException"), body

    status, body = raw(h, "Firehose_20150804.PutRecord", b'{"DeliveryStreamName": "app", "Record": ')
    assert (status, body["__type"]) == (400, "SerializationException"), body

    status, body = raw(h, "Firehose_20150804.StartTheMachine", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException"), body
    status, body = raw(h, None, b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException"), body

    # A body over limits.request_bytes_max (8 MiB by default).
    status, body = raw(h, "Firehose_20150804.PutRecord", b"{" + b" " * (9 << 20) + b"}")
    assert (status, body["__type"]) == (413, "InvalidArgumentException"), body

    assert log_bytes(h) == before, "a refused request wrote to the log"
    assert h.metric("incoming_records", stream="app") == 0

    # The daemon is unharmed: a good record still goes through.
    good = base64.b64encode(b'{"ok":1}').decode()
    status, body = raw(h, "Firehose_20150804.PutRecord", json.dumps({"DeliveryStreamName": "app", "Record": {"Data": good}}).encode())
    assert status == 200 and body["RecordId"]
    assert h.metric("incoming_records", stream="app") == 1


def test_signatures_are_verified(hydrant_factory, tmp_path):
    cfg = CONFIG.replace("OUT", str(tmp_path / "out")) + "auth:\n  access_keys:\n    - { access_key_id: AKIDHYDRANT, secret_access_key: correct-secret }\n"
    h = hydrant_factory(cfg).start()
    before = log_bytes(h)
    ok = h.firehose(key="AKIDHYDRANT", secret="correct-secret")
    assert ok.put_record(DeliveryStreamName="app", Record={"Data": b"signed"})["RecordId"]

    wrong = h.firehose(key="AKIDHYDRANT", secret="wrong-secret")
    e = expect_client_error(lambda: wrong.put_record(DeliveryStreamName="app", Record={"Data": b"x"}), "InvalidSignatureException")
    assert "signature" in str(e).lower()
    unknown = h.firehose(key="AKIDUNKNOWN", secret="correct-secret")
    expect_client_error(lambda: unknown.put_record(DeliveryStreamName="app", Record={"Data": b"x"}), "UnrecognizedClientException")

    status, body = raw(h, "Firehose_20150804.ListDeliveryStreams", b"{}")
    assert (status, body["__type"]) == (403, "MissingAuthenticationTokenException")

    # A request signed 10 minutes ago is refused as expired.
    import datetime
    from unittest import mock

    stale = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=stale.replace(tzinfo=None)):
        e = expect_client_error(lambda: ok.put_record(DeliveryStreamName="app", Record={"Data": b"x"}), "InvalidSignatureException")
    assert "Signature expired" in str(e)

    assert log_bytes(h) - before > 0
    assert h.metric("incoming_records", stream="app") == 1, "only the correctly signed record is written"


@pytest.mark.parametrize(
    "yaml, path",
    [
        ("streams:\n  a:\n    bufferin: { size_mb: 5 }\n    destination: { type: file, path: /x }\n", "streams.a.bufferin: unknown field `bufferin`"),
        ("streams:\n  a:\n    buffering: { size_mb: 500 }\n    destination: { type: file, path: /x }\n", "streams.a.buffering.size_mb: 500 is out of range"),
        ("streams:\n  a:\n    destination: { type: s3, prefix: logs/ }\n", "streams.a.destination.bucket: missing"),
    ],
)
def test_validate_names_the_yaml_path(tmp_path, yaml, path):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml)
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert path in r.stderr, r.stderr
    # The daemon refuses the same file.
    r = subprocess.run([hydrant_bin(), "run", "-c", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and path in r.stderr, r.stderr


def test_validate_reports_all_errors(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("streams:\n  a:\n    shards: 0\n    compression: lz4\n    buffering: { interval_secs: 1000 }\n    destination: { type: file, path: /x }\n")
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    for p in ("streams.a.shards", "streams.a.compression", "streams.a.buffering.interval_secs"):
        assert p in r.stderr, r.stderr
    assert "3 error(s)" in r.stderr
    # Every example in config/ validates: tests/test_operations.py (after building
    # the transform an example refers to).
