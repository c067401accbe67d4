"""The data-lake output read back by readers no one here wrote: Python's gzip,
zstandard and snappy modules, and `cryptography`'s AESGCM following
docs/encryption.md."""

import base64
import gzip
import io
import json
import subprocess
import zlib

import pytest
import snappy
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import s3_store_yaml
from harness import hydrant_bin, read_objects, records_in, wait_until

DECOMPRESS = {
    ".gz": gzip.decompress,
    ".zst": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
    ".snappy": lambda b: (lambda out: (snappy.stream_decompress(io.BytesIO(b), out), out.getvalue())[1])(io.BytesIO()),
}


def stream(bucket, compression, extra=""):
    return f"""streams:
  lake:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    compression: {compression}
{extra}    destination: {{ type: s3, bucket: {bucket}, prefix: lake/ }}
"""


def put_records(h, n):
    fh = h.firehose()
    sent = [json.dumps({"id": i, "msg": f"event {i} " + "x" * (i % 50)}) for i in range(n)]
    for i in range(0, n, 500):
        assert fh.put_record_batch(DeliveryStreamName="lake", Records=[{"Data": s.encode()} for s in sent[i:i + 500]])["FailedPutCount"] == 0
    return sent


@pytest.mark.parametrize("compression, ext, level", [("gzip", ".gz", 9), ("zstd", ".zst", 19), ("snappy", ".snappy", None)])
def test_python_decompresses_every_compression(hydrant_factory, garage, bucket, compression, ext, level):
    lvl = f"    compression_level: {level}\n" if level else ""
    h = hydrant_factory(s3_store_yaml(garage) + stream(bucket, compression, lvl)).start()
    sent = put_records(h, 3000)
    s3 = garage.s3()

    def lines():
        objs = read_objects(s3, bucket)
        assert all(k.endswith(ext) for k in objs), list(objs)
        got = [x for b in objs.values() for x in DECOMPRESS[ext](b).decode().splitlines()]
        return got if len(got) >= 3000 else None

    got = wait_until(lines, timeout=60, what=f"3000 {compression} records")
    assert sorted(got) == sorted(sent)


def gzip_members(blob: bytes) -> int:
    """How many gzip members `blob` holds, read one after another."""
    n = 0
    while blob:
        d = zlib.decompressobj(wbits=31)
        d.decompress(blob)
        assert d.eof, "a truncated member"
        blob, n = d.unused_data, n + 1
    return n


def test_gzip_objects_of_many_members_pass_gzip_t_and_python(hydrant_factory, garage, bucket, tmp_path):
    """gzip compresses a batch as members of `limits.gzip_member_bytes` of
    input, on two threads: the `gzip` command and Python's gzip read every
    object whole."""
    limits = "limits: { gzip_member_bytes: 65536, gzip_threads_max: 2 }\n"
    h = hydrant_factory(s3_store_yaml(garage) + limits + stream(bucket, "gzip")).start()
    fh = h.firehose()
    sent = [json.dumps({"id": i, "msg": f"event {i} " + "word " * (50 + i % 50)}) for i in range(6000)]
    for i in range(0, len(sent), 500):
        assert fh.put_record_batch(DeliveryStreamName="lake", Records=[{"Data": s.encode()} for s in sent[i:i + 500]])["FailedPutCount"] == 0
    s3 = garage.s3()

    def objects():
        objs = read_objects(s3, bucket)
        n = sum(len(gzip.decompress(b).splitlines()) for b in objs.values())
        return objs if n >= len(sent) else None

    objs = wait_until(objects, timeout=60, what=f"{len(sent)} gzip records")
    got = []
    for key, blob in objs.items():
        assert key.endswith(".gz"), key
        path = tmp_path / "object.gz"
        path.write_bytes(blob)
        t = subprocess.run(["gzip", "-t", str(path)], capture_output=True, text=True)
        assert t.returncode == 0, f"gzip -t {key}: {t.stderr}"
        got += gzip.decompress(blob).decode().splitlines()
    assert sorted(got) == sorted(sent)
    assert max(gzip_members(b) for b in objs.values()) > 1, "no object was larger than one member"


def decrypt_per_spec(blob: bytes, keys: dict) -> bytes:
    """Written from docs/encryption.md alone."""
    assert blob[:4] == b"HYE1", "magic"
    assert blob[4] == 1 and blob[5] == 1, "version and algorithm"
    chunk = int.from_bytes(blob[6:10], "little")
    prefix, id_len = blob[10:18], blob[18]
    header = blob[:19 + id_len]
    key_id = blob[19:19 + id_len].decode()
    aead = AESGCM(keys[key_id])
    body = blob[19 + id_len:]
    pieces = [body[p:p + chunk + 16] for p in range(0, len(body), chunk + 16)]
    if not pieces:
        raise ValueError("truncated")
    out = []
    for i, piece in enumerate(pieces):
        flag = b"\x01" if i == len(pieces) - 1 else b"\x00"
        out.append(aead.decrypt(prefix + i.to_bytes(4, "big"), piece, header + flag))
    return b"".join(out)


def test_encrypted_objects_decrypt_with_cryptography_and_detect_tampering(hydrant_factory, garage, bucket, tmp_path):
    new_key, old_key = bytes(range(32)), bytes(range(100, 132))
    (tmp_path / "new.key").write_text(new_key.hex() + "\n")
    enc = f"""    encryption:
      chunk_bytes: 1024
      keys:
        - {{ id: key-2026-11, file: {tmp_path / 'new.key'} }}
        - {{ id: key-2026-05, env: HYDRANT_TEST_OLD_KEY }}
"""
    h = hydrant_factory(s3_store_yaml(garage) + stream(bucket, "gzip", enc), env={"HYDRANT_TEST_OLD_KEY": base64.b64encode(old_key).decode()}).start()
    sent = put_records(h, 2000)
    s3 = garage.s3()
    keys = {"key-2026-11": new_key, "key-2026-05": old_key}

    def decrypted():
        objs = read_objects(s3, bucket)
        got = [x for b in objs.values() for x in gzip.decompress(decrypt_per_spec(b, keys)).decode().splitlines()]
        return (objs, got) if len(got) >= 2000 else None

    objs, got = wait_until(decrypted, timeout=60, what="2000 encrypted records")
    assert sorted(got) == sorted(sent)
    assert all(k.endswith(".gz.enc") for k in objs)
    blob = max(objs.values(), key=len)
    assert blob[19:19 + blob[18]] == b"key-2026-11", "the first key encrypts"
    assert len(blob) > 19 + 11 + 3 * (1024 + 16), "the test needs an object of several chunks"

    # Tampering with any byte is detected (a sample of positions across header and body).
    step = max(1, len(blob) // 200)
    for pos in list(range(0, len(blob), step)) + [len(blob) - 1]:
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises((InvalidTag, AssertionError, KeyError, ValueError, UnicodeDecodeError)):
            decrypt_per_spec(bytes(bad), keys)
    # Truncation at a chunk boundary and reordering are detected too.
    header_len = 19 + blob[18]
    with pytest.raises(InvalidTag):
        decrypt_per_spec(blob[:header_len + 1024 + 16], keys)
    c = 1024 + 16
    swapped = blob[:header_len] + blob[header_len + c:header_len + 2 * c] + blob[header_len:header_len + c] + blob[header_len + 2 * c:]
    with pytest.raises(InvalidTag):
        decrypt_per_spec(swapped, keys)

    # hydrant decrypt reverses it, and refuses a tampered object with the reason.
    (tmp_path / "obj").write_bytes(blob)
    r = subprocess.run([hydrant_bin(), "decrypt", "--key-file", f"key-2026-11={tmp_path / 'new.key'}", str(tmp_path / "obj"), "-o", str(tmp_path / "plain.gz")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert gzip.decompress((tmp_path / "plain.gz").read_bytes()) == gzip.decompress(decrypt_per_spec(blob, keys))
    bad = bytearray(blob)
    bad[len(blob) // 2] ^= 0xFF
    (tmp_path / "bad").write_bytes(bytes(bad))
    r = subprocess.run([hydrant_bin(), "decrypt", "--key-file", f"key-2026-11={tmp_path / 'new.key'}", str(tmp_path / "bad")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "fails authentication" in r.stderr, r.stderr
    r = subprocess.run([hydrant_bin(), "decrypt", str(tmp_path / "obj")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "key-2026-11" in r.stderr, r.stderr


def test_encryption_config_errors_name_their_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("""streams:
  a:
    encryption:
      keys:
        - { id: k1, env: HYDRANT_TEST_UNSET_VARIABLE }
        - { id: k2, file: /nonexistent/key }
    destination: { type: file, path: /tmp/x }
""")
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "streams.a.encryption.keys[0].env: environment variable HYDRANT_TEST_UNSET_VARIABLE is not set" in r.stderr, r.stderr
    assert "streams.a.encryption.keys[1].file: cannot read /nonexistent/key" in r.stderr, r.stderr


PARQUET = """streams:
  lake:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    encoding:
      format: parquet
      compression: zstd
      row_group_rows: 500
      schema:
        - {{ name: id, type: int64, nullable: false }}
        - {{ name: price, type: "decimal(10, 2)" }}
        - {{ name: ratio, type: float64 }}
        - {{ name: ok, type: bool }}
        - {{ name: name, type: string }}
        - {{ name: at, type: "timestamp[ms, UTC]" }}
        - {{ name: day, type: date32 }}
        - {{ name: tags, type: "list<string>" }}
        - {{ name: user, type: "struct<uid: int32, email: string>" }}
        - {{ name: attrs, type: "map<string, int64>" }}
    destination: {{ type: {dest} }}
{extra}"""


def parquet_record(i):
    return {
        "id": i, "price": f"{i % 1000}.{i % 100:02d}", "ratio": i / 7, "ok": i % 2 == 0, "name": f"n{i}",
        "at": f"2026-11-24T12:{i % 60:02d}:00.000Z", "day": "2026-11-24", "tags": [f"t{i % 3}", "x"],
        "user": {"uid": i % 1000, "email": f"u{i}@example.com"}, "attrs": {"a": i, "b": -i},
    }


def test_parquet_read_back_by_pyarrow_and_duckdb_with_bad_records_in_error_output(hydrant_factory, garage, bucket, tmp_path):
    import datetime
    import decimal

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest = f"s3, bucket: {bucket}, prefix: 'events/'"
    h = hydrant_factory(s3_store_yaml(garage) + PARQUET.format(dest=dest, extra=""), env={}).start()
    good = [parquet_record(i) for i in range(2000)]
    bad = [b'{"id": "not a number"}', b'{"name": "no id"}', b"not json at all", b'{"id": 5, "day": "yesterday"}']
    fh = h.firehose()
    records = [json.dumps(r).encode() for r in good[:1000]] + bad + [json.dumps(r).encode() for r in good[1000:]]
    for i in range(0, len(records), 500):
        fh.put_record_batch(DeliveryStreamName="lake", Records=[{"Data": d} for d in records[i:i + 500]])
    s3 = garage.s3()

    def tables():
        objs = {k: v for k, v in read_objects(s3, bucket, "events/").items() if "format-conversion-failed" not in k}
        tabs = [pq.read_table(pa.BufferReader(b)) for b in objs.values()]
        return (objs, tabs) if sum(t.num_rows for t in tabs) >= 2000 else None

    objs, tabs = wait_until(tables, timeout=60, what="2000 Parquet rows")
    assert all(k.endswith(".parquet") for k in objs)
    table = pa.concat_tables(tabs).sort_by("id")
    assert table.num_rows == 2000
    schema = table.schema
    assert schema.field("id").type == pa.int64() and not schema.field("id").nullable
    assert schema.field("price").type == pa.decimal128(10, 2)
    assert schema.field("at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("day").type == pa.date32()
    assert pa.types.is_map(schema.field("attrs").type)
    rows = table.to_pylist()
    r = rows[1234]
    assert r["id"] == 1234 and r["price"] == decimal.Decimal("234.34") and r["ok"] is True and r["name"] == "n1234"
    assert r["ratio"] == 1234 / 7
    assert r["at"] == datetime.datetime(2026, 11, 24, 12, 34, tzinfo=datetime.timezone.utc)
    assert r["day"] == datetime.date(2026, 11, 24)
    assert r["tags"] == ["t1", "x"] and r["user"] == {"uid": 234, "email": "u1234@example.com"}
    assert dict(r["attrs"]) == {"a": 1234, "b": -1234}
    assert [x["id"] for x in rows] == list(range(2000))

    # DuckDB reads the same files.
    files = tmp_path / "pq"
    files.mkdir()
    for n, (k, b) in enumerate(objs.items()):
        (files / f"{n}.parquet").write_bytes(b)
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*), sum(id), min(day), max(price) FROM '{files}/*.parquet'").fetchone() == (
        2000, sum(range(2000)), datetime.date(2026, 11, 24), decimal.Decimal("999.99"))
    assert con.execute(f"SELECT user.email FROM '{files}/*.parquet' WHERE id = 7").fetchone() == ("u7@example.com",)

    # The records that do not fit the schema are in the error output, with the reason.
    errs = wait_until(lambda: (lambda x: x if len(x) >= 4 else None)(records_in({k: v for k, v in read_objects(s3, bucket).items() if "format-conversion-failed" in k})),
                      timeout=30, what="4 format-conversion-failed records")
    rows = [json.loads(x) for x in errs]
    assert sorted(base64.b64decode(x["rawData"]) for x in rows) == sorted(bad)
    assert all(x["errorCode"] == "format-conversion-failed" and "schema" in x["errorMessage"] for x in rows)


def test_parquet_config_errors_name_their_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("""streams:
  a:
    compression: gzip
    encoding:
      format: parquet
      schema:
        - { name: id, type: varchar }
        - { name: t, type: "timestamp[hours]" }
    destination: { type: file, path: /tmp/x }
""")
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "streams.a.encoding.schema[0].type: `varchar` is not a type" in r.stderr, r.stderr
    assert "streams.a.encoding.schema[1].type" in r.stderr
    assert "streams.a.compression: must be none with parquet" in r.stderr


PARTITIONED = """streams:
  lake:
    shards: 2
    buffering: {{ size_mb: 8, interval_secs: 2 }}
    encoding:
      format: parquet
      compression: zstd
      schema:
        - {{ name: id, type: int64, nullable: false }}
        - {{ name: customer_id, type: string }}
        - {{ name: event, type: "struct<kind: string, ms: int64>" }}
        - {{ name: ts, type: string }}
    dynamic_partitioning:
      keys:
        customer: .customer_id
        kind: .event.kind | ascii_downcase
      timestamp: {{ query: .ts, format: rfc3339 }}
    destination:
      type: s3
      bucket: {bucket}
      prefix: "events/customer=!{{partitionKeyFromQuery:customer}}/kind=!{{partitionKeyFromQuery:kind}}/!{{timestamp:'year='yyyy'/month='MM'/day='dd}}/"
      error_output_prefix: "errors/!{{firehose:error-output-type}}/"
"""


def test_partitioned_by_two_jq_keys_and_record_time_as_hive_paths_read_by_duckdb(hydrant_factory, garage, bucket, tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    h = hydrant_factory(s3_store_yaml(garage) + PARTITIONED.format(bucket=bucket)).start()
    customers, kinds = ["acme", "globex", "initech"], ["Click", "VIEW"]
    days = ["2026-11-23T23:59:59.900Z", "2026-11-24T00:00:00+00:00", "2026-12-01T09:30:00+05:30"]
    good = [{"id": i, "customer_id": customers[i % 3], "event": {"kind": kinds[i % 2], "ms": i},
             "ts": days[(i // 6) % 3]} for i in range(3000)]
    bad = [b"not json", b'{"id": 1, "event": {"kind": "click"}, "ts": "2026-11-24T00:00:00Z"}',
           b'{"id": 2, "customer_id": "acme", "event": {"kind": "click"}, "ts": "last tuesday"}',
           b'{"id": 3, "customer_id": "a/b", "event": {"kind": "click"}, "ts": "2026-11-24T00:00:00Z"}']
    records = [json.dumps(r).encode() for r in good[:1500]] + bad + [json.dumps(r).encode() for r in good[1500:]]
    fh = h.firehose()
    for i in range(0, len(records), 500):
        assert fh.put_record_batch(DeliveryStreamName="lake", Records=[{"Data": d} for d in records[i:i + 500]])["FailedPutCount"] == 0
    s3 = garage.s3()

    def objects():
        objs = read_objects(s3, bucket, "events/")
        rows = sum(pq.read_metadata(pa.BufferReader(b)).num_rows for b in objs.values())
        return objs if rows >= 3000 else None

    objs = wait_until(objects, timeout=60, what="3000 partitioned rows")
    # Every row sits under the prefix its own values and time call for.
    expected_day = {days[0]: "year=2026/month=11/day=23", days[1]: "year=2026/month=11/day=24",
                    days[2]: "year=2026/month=12/day=01"}
    seen = []
    for key, body in objs.items():
        assert key.endswith(".parquet"), key
        for row in pq.read_table(pa.BufferReader(body)).to_pylist():
            want = f"events/customer={row['customer_id']}/kind={row['event']['kind'].lower()}/{expected_day[row['ts']]}/"
            assert key.startswith(want), (key, row)
            seen.append(row["id"])
    assert sorted(seen) == list(range(3000))
    assert len({k.rsplit("/", 1)[0] for k in objs}) == 3 * 2 * 3

    # DuckDB reads the layout as Hive partitions.
    for k, b in objs.items():
        p = tmp_path / "lake" / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b)
    con = duckdb.connect()
    got = con.execute(f"""SELECT customer, kind, year, month, day, count(*) FROM
        read_parquet('{tmp_path}/lake/events/**/*.parquet', hive_partitioning = true)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    want = {}
    for r in good:
        y, m, d = [x.split("=")[1] for x in expected_day[r["ts"]].split("/")]
        k = (r["customer_id"], r["event"]["kind"].lower(), int(y), int(m), int(d))
        want[k] = want.get(k, 0) + 1
    assert [(c, k, int(y), int(m), int(d), n) for c, k, y, m, d, n in got] == sorted((*k, n) for k, n in want.items())
    assert con.execute(f"""SELECT count(*) FROM read_parquet('{tmp_path}/lake/events/**/*.parquet', hive_partitioning = true)
        WHERE customer = 'acme' AND kind = 'click'""").fetchone() == (sum(1 for r in good if r["customer_id"] == "acme" and r["event"]["kind"] == "Click"),)

    # Records that cannot be partitioned are in the error output with the reason; the rest flowed.
    errs = wait_until(lambda: (lambda x: x if len(x) >= 4 else None)(records_in(read_objects(s3, bucket, "errors/"))),
                      timeout=30, what="4 partitioning-failed records")
    rows = {base64.b64decode(x["rawData"]): x for x in map(json.loads, errs)}
    assert sorted(rows) == sorted(bad)
    assert all(x["errorCode"] == "partitioning-failed" for x in rows.values())
    assert "not JSON" in rows[bad[0]]["errorMessage"]
    assert "partition key `customer` (`.customer_id`) yields null" in rows[bad[1]]["errorMessage"]
    assert "record time (`.ts`)" in rows[bad[2]]["errorMessage"] and "rfc3339" in rows[bad[2]]["errorMessage"]
    assert "cannot be part of an object key" in rows[bad[3]]["errorMessage"]
    assert all(k.startswith("errors/partitioning-failed/") for k in read_objects(s3, bucket, "errors/"))


def test_600_partitions_with_a_limit_of_500_deliver_every_record(hydrant_factory, tmp_path):
    out = tmp_path / "out"
    h = hydrant_factory(f"""streams:
  lake:
    shards: 1
    buffering: {{ size_mb: 64, interval_secs: 3 }}
    dynamic_partitioning:
      keys: {{ k: .k }}
      open_partitions_max: 500
    destination:
      type: file
      path: {out}
      prefix: "k=!{{partitionKeyFromQuery:k}}/"
      error_output_prefix: "errors/!{{firehose:error-output-type}}/"
""").start()
    sent = [json.dumps({"k": f"key{i % 600}", "n": i}) for i in range(3000)]
    fh = h.firehose()
    for i in range(0, len(sent), 500):
        assert fh.put_record_batch(DeliveryStreamName="lake", Records=[{"Data": s.encode()} for s in sent[i:i + 500]])["FailedPutCount"] == 0

    def delivered():
        objs = read_objects(None, out)
        lines = [(k, x) for k, b in objs.items() for x in b.decode().splitlines()]
        return (objs, lines) if len(lines) >= 3000 else None

    objs, lines = wait_until(delivered, timeout=60, what="3000 records in 600 partitions")
    assert sorted(x for _, x in lines) == sorted(sent)
    for key, line in lines:
        assert key.startswith(f"k={json.loads(line)['k']}/"), (key, line)
    assert len({k.split("/")[0] for k in objs}) == 600
    # Round-robin over 600 keys with room for 500: the oldest kept being flushed.
    assert h.metric("partition_evictions", stream="lake") > 0
    assert len(objs) > 600


def test_partitioning_config_errors_name_their_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("""streams:
  a:
    dynamic_partitioning:
      keys: { customer: ".customer |", day: .day }
      timestamp: { query: .ts, format: "%Y-%Q" }
    destination:
      type: file
      path: /tmp/x
      prefix: "c=!{partitionKeyFromQuery:customer}/!{partitionKeyFromQuery:dya}/!{timestamp:yyyy/MM/dd/HH/mm/ss/SSS}"
      error_output_prefix: "e/!{firehose:error-output-type}/"
""")
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "streams.a.destination.prefix: " in r.stderr, r.stderr
    f.write_text(f.read_text().replace("dya", "day").replace("/SSS", ""))
    r = subprocess.run([hydrant_bin(), "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "streams.a.dynamic_partitioning.keys.customer: `.customer |` is not a valid jq expression" in r.stderr, r.stderr
    assert "streams.a.dynamic_partitioning.timestamp.format: `%Y-%Q` is not a valid strftime pattern" in r.stderr, r.stderr
