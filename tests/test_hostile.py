"""Hostile clients: 1,500 connections holding half-sent headers and 300
trickling bodies do not keep a normal producer out; they are cut at their
deadlines; an idle keep-alive connection is closed; malformed bodies get a
4xx and the daemon stays up."""

import json
import socket
import time

import boto3
from botocore.config import Config as BotoConfig

from harness import wait_until

def limits(out):
    return ("limits:\n  header_read_timeout_secs: 3\n  body_read_timeout_secs: 3\n"
            f"streams:\n  default:\n    destination: {{ type: file, path: {out} }}\n")


def closed(s: socket.socket) -> bool:
    """True once the server has closed (or answered and closed) `s`."""
    s.settimeout(0.05)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (socket.timeout, BlockingIOError):
        return False
    except OSError:
        return True


def test_slow_clients_do_not_keep_a_producer_out_and_are_cut(hydrant_factory, tmp_path):
    h = hydrant_factory(limits(tmp_path / "out")).start()
    fh = boto3.client("firehose", endpoint_url=h.url, region_name="us-east-1", aws_access_key_id="t",
                      aws_secret_access_key="t",
                      config=BotoConfig(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=5))
    port = h.port
    heads = []
    for _ in range(1500):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.PutRecord\r\n")
        heads.append(s)
    bodies = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.PutRecord\r\n"
                  b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 100000\r\n\r\n{")
        bodies.append(s)
    # With all of them connected, a producer is answered (within its own 5 s timeouts).
    r = fh.put_record(DeliveryStreamName="default", Record={"Data": b'{"ok": 1}\n'})
    assert r["RecordId"]
    for s in bodies[:100]:
        s.sendall(b" ")
    # At their deadlines the slow ones are cut; the trickling bodies get a 408.
    wait_until(lambda: all(closed(s) for s in heads), timeout=30, what="half-sent headers cut")
    answered = []
    for s in bodies:
        s.settimeout(10)
        try:
            answered.append(s.recv(65536))
        except OSError:
            answered.append(b"")
    assert sum(b"408" in a.split(b"\r\n", 1)[0] for a in answered) >= 250, [a[:60] for a in answered[:3]]
    for s in heads + bodies:
        s.close()
    assert fh.put_record(DeliveryStreamName="default", Record={"Data": b'{"ok": 2}\n'})["RecordId"]

    # A keep-alive connection left idle is closed after the header deadline.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    wait_until(lambda: closed(s), timeout=15, what="an idle connection closed")
    s.close()


def test_malformed_bodies_get_4xx_and_the_daemon_stays_up(hydrant_factory, tmp_path):
    h = hydrant_factory(limits(tmp_path / "out")).start()
    target = {"X-Amz-Target": "Firehose_20150804.PutRecordBatch", "Content-Type": "application/x-amz-json-1.1"}
    cases = {
        "deeply nested JSON": b"[" * 200_000 + b"]" * 200_000,
        "invalid UTF-8": b'{"DeliveryStreamName": "default", "Records": [{"Data": "\xff\xfe"}]}',
        "3 MB of whitespace": b" " * (3 << 20),
    }
    for what, body in cases.items():
        status, answer, _ = h.post("/", body, target)
        assert 400 <= status < 500, (what, status, answer[:200])
    for name in ("..%2F..%2Fetc", "a%00b", "%2e%2e", "x" * 300):
        status, _, _ = h.post(f"/v1/streams/{name}/records", b'{"a":1}\n')
        assert 400 <= status < 500, (name, status)
    assert h.healthy()
    fh = h.firehose()
    assert fh.put_record(DeliveryStreamName="default", Record={"Data": json.dumps({"after": True}).encode()})["RecordId"]
    time.sleep(0.1)
    assert h.proc.poll() is None
