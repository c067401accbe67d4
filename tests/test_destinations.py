"""HTTP endpoint and PostgreSQL destinations against real receivers, and the
conformance suite every destination passes."""

import base64
import json
import os
import subprocess
import time
import uuid

import pytest

from harness import (Postgres, Producers, Proxy, Receiver, error_code, read_objects,
                     records_in, wait_until)


@pytest.fixture(scope="session")
def postgres():
    pg = Postgres().start()
    yield pg
    pg.cleanup()


@pytest.fixture
def receiver():
    r = Receiver(access_key="secret-key", attributes={"env": "test", "team": "data"}, gzip_expected=True)
    yield r
    r.close()


def http_yaml(url, retry=3600, timeout=5, extra=""):
    return f"""streams:
  app:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    retry_duration_secs: {retry}
    destination:
      type: http
      url: {url}
      access_key: secret-key
      content_encoding: gzip
      timeout_secs: {timeout}
      common_attributes: {{ env: test, team: data }}
{extra}"""


def errors_dir(h, stream="app"):
    return h.data_dir / "errors" / stream


def put(h, records, stream="app"):
    fh = h.firehose()
    for i in range(0, len(records), 500):
        r = fh.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": d} for d in records[i:i + 500]])
        assert r["FailedPutCount"] == 0


def test_http_endpoint_delivers_in_firehose_format(hydrant_factory, receiver):
    h = hydrant_factory(http_yaml(receiver.url)).start()
    sent = [json.dumps({"id": i}).encode() for i in range(1000)]
    put(h, sent)
    wait_until(lambda: len(receiver.records) >= 1000, timeout=30, what="1000 records at the receiver")
    assert receiver.violations == []
    assert sorted(receiver.records) == sorted(sent)
    # The daemon counts a batch once the receiver's answer is back.
    wait_until(lambda: h.metric("delivery_records", stream="app", destination="http") == 1000,
               timeout=10, what="1000 delivered records counted")


def test_http_request_id_is_kept_across_retries(hydrant_factory, receiver):
    receiver.mode = "500"
    h = hydrant_factory(http_yaml(receiver.url)).start()
    put(h, [b'{"only":1}'])
    wait_until(lambda: receiver.requests >= 2, timeout=30, what="two attempts")
    receiver.mode = "ok"
    wait_until(lambda: receiver.records, timeout=30, what="delivery after the receiver recovered")
    ids = {rid for rid, _ in receiver.all_ids}
    assert len(ids) == 1, f"retries used different request ids: {ids}"
    assert receiver.records == [b'{"only":1}']
    assert h.metric("delivery_retries", stream="app") >= 1
    assert not errors_dir(h).exists() or records_in(read_objects(None, errors_dir(h))) == []


@pytest.mark.parametrize("mode", ["500", "hang", "wrong_id", "close"])
def test_http_misbehaving_receiver_retries_then_error_output(hydrant_factory, receiver, tmp_path, mode):
    receiver.mode = mode
    backup = tmp_path / "backup"
    h = hydrant_factory(http_yaml(receiver.url, retry=3, timeout=1,
                                  extra=f"    backup: {{ mode: failed_only, destination: {{ type: file, path: {backup} }} }}\n")).start()
    sent = [json.dumps({"id": i, "mode": mode}).encode() for i in range(20)]
    put(h, sent)
    lines = wait_until(lambda: (lambda x: x if len(x) >= 20 else None)(records_in(read_objects(None, errors_dir(h)))),
                       timeout=60, what="20 records in the error output")
    rows = [json.loads(x) for x in lines]
    assert sorted(base64.b64decode(r["rawData"]) for r in rows) == sorted(sent)
    assert all(r["errorCode"] == "http-endpoint-failed" and r["attemptsMade"] >= 2 for r in rows), rows[0]
    assert all(k.startswith("http-endpoint-failed/") for k in read_objects(None, errors_dir(h)))
    print(f"\n{mode}: {rows[0]['errorMessage'][:160]}")
    assert receiver.requests >= 2, "the batch was not retried"
    # The backup of failed data is written after the error output.
    want = sorted(x.decode() for x in sent)
    wait_until(lambda: sorted(records_in(read_objects(None, backup))) == want, timeout=30,
               what="the failed records in the backup")
    assert h.metric("delivery_records", stream="app") == 0


def pg_yaml(pg, table, mapping, retry=3600, extra=""):
    return f"""streams:
  app:
    shards: 2
    buffering: {{ size_mb: 4, interval_secs: 1 }}
    retry_duration_secs: {retry}
    destination:
      type: postgres
      connection: {pg.dsn}
      table: {table}
      pool_max: 4
{mapping}{extra}"""


COLUMNS = "      columns:\n        - { column: id }\n        - { column: n }\n        - { column: city, field: addr.city }\n"


def make_table(pg, not_null_city=False):
    t = f"events_{uuid.uuid4().hex[:8]}"
    pg.psql(f"CREATE TABLE {t} (id text, n integer, city text {'NOT NULL' if not_null_city else ''})")
    return t


def test_postgres_loads_50000_records_exactly(hydrant_factory, postgres):
    t = make_table(postgres)
    h = hydrant_factory(pg_yaml(postgres, t, COLUMNS)).start()
    put(h, [json.dumps({"id": f"r{i}", "n": i, "addr": {"city": "Oslo"}}).encode() for i in range(50_000)])
    wait_until(lambda: int(postgres.psql(f"SELECT count(*) FROM {t}")) >= 50_000, timeout=90, what="50,000 rows")
    time.sleep(1.5)
    assert postgres.psql(f"SELECT count(*), count(DISTINCT id), sum(n), min(city) FROM {t}") == f"50000|50000|{sum(range(50_000))}|Oslo"


def test_postgres_exactly_once_across_sigkill_and_server_restart(hydrant_factory, postgres):
    t = make_table(postgres)
    h = hydrant_factory(pg_yaml(postgres, t, COLUMNS)).start()
    p = Producers(h.firehose, threads=2, batch=200, pad=10).start()
    for i in range(4):
        time.sleep(0.8)
        h.kill()
        h.start()
    time.sleep(0.5)
    postgres.stop()
    time.sleep(3)
    postgres.start(first_time=False)
    time.sleep(1)
    p.stop()
    assert len(p.acked) > 2000

    def loaded():
        ids = set(postgres.psql(f"SELECT id FROM {t}").split())
        return ids if p.acked <= ids else None

    wait_until(loaded, timeout=120, what="every acknowledged record in PostgreSQL")
    total, distinct = postgres.psql(f"SELECT count(*), count(DISTINCT id) FROM {t}").split("|")
    print(f"\n{len(p.acked)} acknowledged, {total} rows, {distinct} distinct over 4 SIGKILLs and a server restart")
    assert total == distinct, f"{int(total) - int(distinct)} duplicate rows"


@pytest.mark.parametrize("backup_mode", ["all", "failed_only"])
def test_postgres_bad_rows_go_to_error_output_and_the_rest_loads(hydrant_factory, postgres, tmp_path, backup_mode):
    t = make_table(postgres, not_null_city=True)
    backup = tmp_path / "backup"
    h = hydrant_factory(pg_yaml(postgres, t, COLUMNS, extra=f"    backup: {{ mode: {backup_mode}, destination: {{ type: file, path: {backup}, prefix: src/ }} }}\n")).start()
    good = [json.dumps({"id": f"g{i}", "n": i, "addr": {"city": "Oslo"}}).encode() for i in range(100)]
    no_city = json.dumps({"id": "bad-null", "n": 1}).encode()
    wrong_type = json.dumps({"id": "bad-type", "n": "twelve", "addr": {"city": "Rome"}}).encode()
    not_json = b"this is not json"
    put(h, good[:50] + [no_city, wrong_type, not_json] + good[50:])
    lines = wait_until(lambda: (lambda x: x if len(x) >= 3 else None)(records_in(read_objects(None, errors_dir(h)))),
                       timeout=60, what="3 rejected rows in the error output")
    rows = {base64.b64decode(json.loads(x)["rawData"]): json.loads(x) for x in lines}
    assert set(rows) == {no_city, wrong_type, not_json}
    assert "23502" in rows[no_city]["errorMessage"] and "city" in rows[no_city]["errorMessage"]
    assert "22P02" in rows[wrong_type]["errorMessage"]
    assert "not JSON" in rows[not_json]["errorMessage"]
    assert all(r["errorCode"] == "postgres-failed" for r in rows.values())
    assert postgres.psql(f"SELECT count(*), count(DISTINCT id) FROM {t}") == "100|100"
    if backup_mode == "all":
        got = wait_until(lambda: (lambda x: x if len(x) >= 103 else None)(records_in(read_objects(None, backup))), timeout=30, what="backup of all 103 records")
        assert sorted(got) == sorted(x.decode() for x in good + [no_city, wrong_type, not_json])
    else:
        got = wait_until(lambda: (lambda x: x if len(x) >= 3 else None)(records_in(read_objects(None, backup))), timeout=30, what="backup of the 3 failed records")
        time.sleep(1.5)
        got = records_in(read_objects(None, backup))
        assert sorted(got) == sorted(x.decode() for x in [no_city, wrong_type, not_json]), "failed_only must not back up delivered records"
    assert all(k.startswith("src/") for k in read_objects(None, backup))


def test_postgres_jsonb_column(hydrant_factory, postgres):
    t = f"docs_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE TABLE {t} (payload jsonb NOT NULL)")
    h = hydrant_factory(pg_yaml(postgres, t, "      jsonb_column: payload\n")).start()
    put(h, [json.dumps({"id": i, "tags": ["a", "b"], "nested": {"tab": "a\tb"}}).encode() for i in range(300)])
    wait_until(lambda: int(postgres.psql(f"SELECT count(*) FROM {t}")) >= 300, timeout=30, what="300 jsonb rows")
    assert postgres.psql(f"SELECT count(DISTINCT payload->>'id'), min(payload->'nested'->>'tab') FROM {t}") == "300|a\tb"


# --- the conformance suite: the same checks for every destination ---------


ROLE = "arn:aws:iam::000000000000:role/firehose"


def test_postgres_through_the_firehose_api_as_a_redshift_destination(hydrant_factory, postgres, tmp_path):
    """Firehose's Redshift destination is Hydrant's PostgreSQL loader: create,
    describe (every field as sent, no password), UpdateDestination to a jsonb
    table with no record lost or loaded twice; a YAML stream is described in
    the same fields and refuses the update."""
    yaml_table, t1 = make_table(postgres), make_table(postgres)
    t2 = f"docs_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE TABLE {t2} (payload jsonb NOT NULL)")
    h = hydrant_factory(pg_yaml(postgres, yaml_table, COLUMNS)).start()
    fh = h.firehose()
    cfg = {
        "RoleARN": ROLE,
        "ClusterJDBCURL": f"jdbc:postgresql://127.0.0.1:{postgres.port}/hydrant",
        "CopyCommand": {"DataTableName": t1, "DataTableColumns": "id,n", "CopyOptions": "json 'auto'"},
        "Username": "postgres", "Password": "not-checked",
        "RetryOptions": {"DurationInSeconds": 600},
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::pg-failed", "ErrorOutputPrefix": "bad/",
                            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1}, "CompressionFormat": "UNCOMPRESSED"},
        "CloudWatchLoggingOptions": {"Enabled": False},
    }
    fh.create_delivery_stream(DeliveryStreamName="rows", RedshiftDestinationConfiguration=cfg)
    d = fh.describe_delivery_stream(DeliveryStreamName="rows")["DeliveryStreamDescription"]["Destinations"][0]
    r = d["RedshiftDestinationDescription"]
    assert "Password" not in r
    for k in ("RoleARN", "ClusterJDBCURL", "CopyCommand", "Username", "RetryOptions", "CloudWatchLoggingOptions"):
        assert r[k] == cfg[k], k
    assert {k: r["S3DestinationDescription"][k] for k in cfg["S3Configuration"]} == cfg["S3Configuration"]
    assert r["S3BackupMode"] == "Disabled"

    def put(lo, hi):
        recs = [{"Data": json.dumps({"id": str(i), "n": i}).encode()} for i in range(lo, hi)]
        assert fh.put_record_batch(DeliveryStreamName="rows", Records=recs)["FailedPutCount"] == 0

    put(0, 300)
    wait_until(lambda: int(postgres.psql(f"SELECT count(*) FROM {t1}")) >= 300, timeout=30, what="300 rows in the first table")
    fh.update_destination(
        DeliveryStreamName="rows", CurrentDeliveryStreamVersionId="1", DestinationId=d["DestinationId"],
        RedshiftDestinationUpdate={"CopyCommand": {"DataTableName": t2, "DataTableColumns": "payload",
                                                   "CopyOptions": "json 'noshred'"},
                                   "S3Update": {"ErrorOutputPrefix": "bad2/"}})
    desc = fh.describe_delivery_stream(DeliveryStreamName="rows")["DeliveryStreamDescription"]
    r = desc["Destinations"][0]["RedshiftDestinationDescription"]
    assert desc["VersionId"] == "2"
    assert r["CopyCommand"]["DataTableName"] == t2
    assert (r["S3DestinationDescription"]["ErrorOutputPrefix"], r["S3DestinationDescription"]["BucketARN"]) == \
        ("bad2/", "arn:aws:s3:::pg-failed"), "S3Update changes only the fields it gives"
    put(300, 600)
    wait_until(lambda: int(postgres.psql(f"SELECT count(*) FROM {t2}")) >= 300, timeout=30, what="300 rows in the jsonb table")
    time.sleep(2)
    first = sorted(int(x) for x in postgres.psql(f"SELECT id FROM {t1}").split())
    second = sorted(int(x) for x in postgres.psql(f"SELECT payload->>'id' FROM {t2}").split())
    assert first == list(range(300)) and second == list(range(300, 600)), "each record once across the update"

    code, msg = error_code(lambda: fh.update_destination(
        DeliveryStreamName="rows", CurrentDeliveryStreamVersionId="1", DestinationId=d["DestinationId"],
        RedshiftDestinationUpdate={"RetryOptions": {"DurationInSeconds": 60}}))
    assert code == "ConcurrentModificationException" and "version 2" in msg
    bad = dict(cfg, CopyCommand={"DataTableName": t1, "DataTableColumns": "id", "CopyOptions": "csv gzip"})
    code, msg = error_code(lambda: fh.create_delivery_stream(DeliveryStreamName="bad", RedshiftDestinationConfiguration=bad))
    assert code == "InvalidArgumentException" and "CopyOptions" in msg
    bad = dict(cfg, ClusterJDBCURL="jdbc:mysql://127.0.0.1:3306/x")
    code, msg = error_code(lambda: fh.create_delivery_stream(DeliveryStreamName="bad", RedshiftDestinationConfiguration=bad))
    assert code == "InvalidArgumentException" and "ClusterJDBCURL" in msg

    # The stream of the configuration file, in the same fields (the CLI reads them too).
    out = subprocess.run(["aws", "--endpoint-url", h.url, "firehose", "describe-delivery-stream", "--delivery-stream-name", "app"],
                         capture_output=True, text=True, timeout=60,
                         env={"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                              "PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    y = json.loads(out.stdout)["DeliveryStreamDescription"]["Destinations"][0]["RedshiftDestinationDescription"]
    assert y["ClusterJDBCURL"] == f"jdbc:postgresql://127.0.0.1:{postgres.port}/hydrant"
    assert (y["CopyCommand"]["DataTableName"], y["CopyCommand"]["DataTableColumns"], y["Username"]) == (yaml_table, "id,n,city", "postgres")
    code, msg = error_code(lambda: fh.update_destination(
        DeliveryStreamName="app", CurrentDeliveryStreamVersionId="1", DestinationId=d["DestinationId"],
        RedshiftDestinationUpdate={"CopyCommand": {"DataTableName": t1}}))
    assert code == "ResourceInUseException" and "configuration file" in msg

class Target:
    """One destination under test: its YAML, how to read what it got, how to
    break it for a while, and a permanently broken variant."""

    def __init__(self, kind, tmp_path, garage, postgres, receiver):
        self.kind = kind
        self.proxy = None
        if kind == "file":
            self.dir = tmp_path / "files"
            self.yaml = f"      type: file\n      path: {self.dir}\n"
            # Broken at run time instead: a path into a regular file is refused at start-up.
            self.broken_yaml = self.yaml
        elif kind == "s3":
            self.bucket = f"conf-{uuid.uuid4().hex[:10]}"
            garage.create_bucket(self.bucket)
            self.proxy = Proxy(garage.s3_port)
            self.s3 = garage.s3()
            creds = f"      region: garage\n      access_key_id: {garage.key_id}\n      secret_access_key: {garage.secret}\n"
            self.yaml = f"      type: s3\n      bucket: {self.bucket}\n      endpoint: {self.proxy.endpoint}\n" + creds
            self.broken_yaml = f"      type: s3\n      bucket: no-such-bucket-{uuid.uuid4().hex[:6]}\n      endpoint: {garage.endpoint}\n" + creds
        elif kind == "http":
            self.receiver = receiver
            receiver.access_key = None
            receiver.attributes = {}
            receiver.gzip_expected = False
            self.proxy = Proxy(receiver.port)
            self.yaml = f"      type: http\n      url: {self.proxy.endpoint}/in\n      timeout_secs: 2\n"
            self.broken_yaml = self.yaml
        elif kind == "postgres":
            self.pg = postgres
            self.table = f"conf_{uuid.uuid4().hex[:8]}"
            postgres.psql(f"CREATE TABLE {self.table} (payload jsonb)")
            self.proxy = Proxy(postgres.port)
            dsn = f"host=127.0.0.1 port={self.proxy.port} user=postgres dbname=hydrant"
            self.yaml = f"      type: postgres\n      connection: {dsn}\n      table: {self.table}\n      jsonb_column: payload\n"
            self.broken_yaml = f"      type: postgres\n      connection: {postgres.dsn}\n      table: no_such_table\n      jsonb_column: payload\n"

    def config(self, yaml, retry=3600):
        return f"""shutdown_timeout_secs: 3
streams:
  app:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    retry_duration_secs: {retry}
    destination:
{yaml}"""

    def delivered(self):
        if self.kind == "file":
            return [json.loads(x)["id"] for x in records_in(read_objects(None, self.dir))]
        if self.kind == "s3":
            return [json.loads(x)["id"] for x in records_in(read_objects(self.s3, self.bucket))]
        if self.kind == "http":
            return [json.loads(x)["id"] for x in self.receiver.records]
        out = self.pg.psql(f"SELECT payload->>'id' FROM {self.table}")
        return out.split() if out else []

    def set_down(self, down):
        if self.kind == "file":
            aside = self.dir.with_name("files-aside")
            if down:
                self.dir.rename(aside)
                self.dir.write_text("not a directory")
            else:
                self.dir.unlink()
                aside.rename(self.dir)
        else:
            self.proxy.set_down(down)

    def close(self):
        if self.proxy:
            self.proxy.close()


@pytest.fixture(params=["file", "s3", "http", "postgres"])
def target(request, tmp_path, garage, postgres):
    r = Receiver(access_key=None)
    t = Target(request.param, tmp_path, garage, postgres, r)
    yield t
    t.close()
    r.close()


def ids(prefix, n):
    return [json.dumps({"id": f"{prefix}{i}"}).encode() for i in range(n)]


def wait_delivered(t, expected, timeout=60):
    return wait_until(lambda: (lambda got: got if set(expected) <= set(got) else None)(t.delivered()),
                      timeout=timeout, what=f"{len(expected)} records at {t.kind}")


def test_conformance(hydrant_factory, target):
    t = target
    h = hydrant_factory(t.config(t.yaml)).start()
    # 1. deliver
    put(h, ids("a", 100))
    wait_delivered(t, [f"a{i}" for i in range(100)])
    # 2. retry after a transient failure
    t.set_down(True)
    put(h, ids("b", 100))
    wait_until(lambda: h.metric("delivery_retries", stream="app") > 0, timeout=30, what="a retried failure")
    t.set_down(False)
    wait_delivered(t, [f"b{i}" for i in range(100)])
    # 3. honour shutdown: with the destination down, SIGTERM still exits within
    # the deadline, and the undelivered records go out after the restart.
    t.set_down(True)
    put(h, ids("c", 50))
    t0 = time.monotonic()
    assert h.terminate(timeout=30) == 0
    assert time.monotonic() - t0 < 10
    t.set_down(False)
    h.start()
    got = wait_delivered(t, [f"c{i}" for i in range(50)])
    assert set(got) == {f"{p}{i}" for p, n in (("a", 100), ("b", 100), ("c", 50)) for i in range(n)}
    h.terminate()
    # 4. a permanent failure ends in the error output, with the reason
    if t.kind == "http":
        t.receiver.mode = "400"
    h2 = hydrant_factory(t.config(t.broken_yaml, retry=2)).start()
    if t.kind == "file":
        t.set_down(True)
    put(h2, ids("d", 10), stream="app")
    if t.kind in ("http", "postgres"):
        errs = h2.data_dir / "errors" / "app"
        lines = wait_until(lambda: (lambda x: x if len(x) >= 10 else None)(records_in(read_objects(None, errs))),
                           timeout=60, what="the error output")
        rows = [json.loads(x) for x in lines]
        assert sorted(base64.b64decode(r["rawData"]) for r in rows) == sorted(ids("d", 10))
        assert all(r["errorMessage"] for r in rows)
        print(f"\n{t.kind} permanent failure: {rows[0]['errorMessage'][:150]}")
    else:
        # An object destination's error output is the destination itself, the
        # broken part: it is retried, never dropped, and the failure is visible.
        wait_until(lambda: h2.metric("delivery_failure", stream="app") >= 1, timeout=60, what="the retry window closing")
        assert h2.metric("error_output_records", stream="app") == 0
        status, body, _ = h2.get("/ready")
        assert status == 503 and b"app" in body


def test_postgres_over_tls(hydrant_factory, tmp_path):
    pg = Postgres()
    ca = pg.make_tls()
    pg.start()
    try:
        t = make_table(pg)
        tls = f"      tls: {{ mode: require, ca_file: {ca} }}\n"
        h = hydrant_factory(pg_yaml(pg, t, COLUMNS + tls)).start()
        put(h, [json.dumps({"id": f"t{i}", "n": i, "addr": {"city": "Bergen"}}).encode() for i in range(100)])
        wait_until(lambda: int(pg.psql(f"SELECT count(*) FROM {t}")) >= 100, timeout=30, what="100 rows over TLS")
        # psql itself connects without TLS here, so TLS sessions are Hydrant's.
        assert int(pg.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl")) >= 1
        # A CA that did not sign the server's certificate is refused: nothing loads.
        other = Postgres()
        wrong_ca = other.make_tls()
        t2 = make_table(pg)
        h2 = hydrant_factory(pg_yaml(pg, t2, COLUMNS + f"      tls: {{ mode: require, ca_file: {wrong_ca} }}\n")).start()
        put(h2, [b'{"id":"x","n":1}'])
        wait_until(lambda: h2.metric("delivery_retries", stream="app") >= 1, timeout=30, what="a refused TLS handshake")
        assert pg.psql(f"SELECT count(*) FROM {t2}") == "0"
        other.cleanup()
    finally:
        pg.cleanup()
