"""Iceberg tables written by Hydrant, read back by pyiceberg (the SQL catalog
on the same SQLite file or PostgreSQL database) and DuckDB's iceberg
extension: every record exactly once, across SIGKILLs too."""

import glob
import json
import os
import subprocess
import time

import duckdb
import pytest

from conftest import s3_store_yaml
from harness import Postgres, Producers, hydrant_bin, read_objects, wait_until

COLUMNS = """    encoding:
      format: parquet
      compression: zstd
      schema:
        - { name: ts, type: "timestamp[ms, UTC]", nullable: false }
        - { name: id, type: string, nullable: false }
        - { name: tenant, type: string }
        - { name: user_id, type: int64 }
        - { name: n, type: int64 }
"""


def stream_yaml(name="app", shards=2, interval=1, commit=2, extra_dest="", extra=""):
    return f"""streams:
  {name}:
    shards: {shards}
    buffering: {{ size_mb: 1, interval_secs: {interval} }}
{COLUMNS}{extra}    destination:
      type: iceberg
      namespace: web
      table: {name}
      partition_by: ["day(ts)", "identity(tenant)", "bucket(4, user_id)"]
      commit_interval_secs: {commit}
{extra_dest}"""


def record(i, day=0):
    ts = 1_780_000_000_000 + day * 86_400_000 + i * 1000
    return {"ts": ts, "id": f"r{i}", "tenant": "ab"[i % 2], "user_id": i % 7, "n": i}


def put(h, recs, stream="app"):
    fh = h.firehose()
    for i in range(0, len(recs), 500):
        chunk = recs[i:i + 500]
        r = fh.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": json.dumps(x).encode()} for x in chunk])
        assert r["FailedPutCount"] == 0


def local_catalog(h):
    from pyiceberg.catalog.sql import SqlCatalog

    from sqlalchemy.exc import OperationalError

    d = h.data_dir / "iceberg"
    wait_until(lambda: (d / "catalog.db").exists(), timeout=60, what="the catalog's database")

    def opened():
        # pyiceberg creates the catalog's tables it finds missing; Hydrant
        # may be creating them at the same moment.
        try:
            return SqlCatalog("hydrant", uri=f"sqlite:///{d}/catalog.db", warehouse=f"file://{d}/warehouse")
        except OperationalError as e:
            if "already exists" in str(e):
                return None
            raise

    return wait_until(opened, timeout=30, what="the catalog opened beside Hydrant")


def rows(catalog, table="web.app"):
    """The table's rows as Python dicts, or [] while it does not exist."""
    try:
        t = catalog.load_table(table)
    except Exception:  # noqa: BLE001 - not created yet
        return []
    return t.scan().to_arrow().to_pylist()


def wait_rows(catalog, n, table="web.app", timeout=60):
    def enough():
        got = rows(catalog, table)
        return got if len(got) >= n else None

    return wait_until(enough, timeout=timeout, what=f"{n} rows in {table}")


def duckdb_connection():
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for mod, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        path = glob.glob(os.path.join(os.path.dirname(mod.__file__), f"extensions/*/{name}.duckdb_extension"))[0]
        con.execute(f"LOAD '{path}'")
    return con


def test_default_catalog_table_read_by_pyiceberg_and_duckdb(hydrant_factory):
    h = hydrant_factory(stream_yaml()).start()
    sent = [record(i, day=i % 3) for i in range(1500)]
    put(h, sent)
    # Records the table cannot hold: a string where a number goes, a
    # required column missing.
    put(h, [{"ts": 1_780_000_000_000, "id": "bad-n", "n": "many"}, {"id": "bad-ts", "n": 1}])
    cat = local_catalog(h)
    got = wait_rows(cat, 1500)
    time.sleep(3)  # a commit interval more: nothing else may arrive
    got = rows(cat)
    assert sorted(r["id"] for r in got) == sorted(x["id"] for x in sent), "every record exactly once"
    assert {r["n"] for r in got} == set(range(1500))

    t = cat.load_table("web.app")
    assert [(f.field_id, f.name, str(f.field_type), f.required) for f in t.schema().fields] == [
        (1, "ts", "timestamptz", True), (2, "id", "string", True), (3, "tenant", "string", False),
        (4, "user_id", "long", False), (5, "n", "long", False)]
    assert [(f.name, str(f.transform), f.source_id) for f in t.spec().fields] == [
        ("ts_day", "day", 1), ("tenant", "identity", 3), ("user_id_bucket", "bucket[4]", 4)]
    # Every snapshot says which log offsets it added; together, each once.
    seen = {}
    for s in t.snapshots():
        props = s.summary.additional_properties
        assert props["hydrant.writer"] == "local"
        for source, ranges in json.loads(props["hydrant.ranges"]).items():
            for a, b in ranges:
                for o in range(a, b + 1):
                    assert (source, o) not in seen, f"offset {o} of {source} in two snapshots"
                    seen[(source, o)] = s.snapshot_id
    assert len(seen) == 1502, "the two refused records' offsets are settled too"
    # Statistics from the footers: a filter on a column prunes files.
    files = t.inspect.files()
    assert files.num_rows >= 3 * 2 * 4
    assert all(lb for lb in files.column("lower_bounds").to_pylist())
    planned = list(t.scan(row_filter="n >= 1400 and tenant = 'a'").plan_files())
    assert 0 < len(planned) < files.num_rows
    assert len(t.scan(row_filter="n >= 1400 and tenant = 'a'").to_arrow()) == 50

    con = duckdb_connection()
    md = t.metadata_location.removeprefix("file://")
    assert con.execute(f"SELECT count(*), count(DISTINCT id), sum(n) FROM iceberg_scan('{md}')").fetchone() == (
        1500, 1500, sum(range(1500)))

    errors = read_objects(None, h.data_dir / "errors" / "app")
    lines = [json.loads(x) for b in errors.values() for x in b.decode().splitlines()]
    assert sorted(x["errorCode"] for x in lines) == ["format-conversion-failed"] * 2
    reasons = {json.loads(__import__("base64").b64decode(x["rawData"]))["id"]: x["errorMessage"] for x in lines}
    assert "'n'" in reasons["bad-n"] or "`n`" in reasons["bad-n"], reasons
    assert "ts" in reasons["bad-ts"], reasons
    assert h.metric("iceberg_committed_records", table="web.app") == 1500
    assert h.metric("iceberg_commits", table="web.app") >= 1


@pytest.fixture(scope="module")
def postgres():
    pg = Postgres().start()
    yield pg
    pg.cleanup()


def test_warehouse_on_garage_with_postgresql_catalog(hydrant_factory, garage, bucket, postgres):
    from pyiceberg.catalog.sql import SqlCatalog

    catalogs = f"""iceberg:
  catalogs:
    lake:
      uri: postgresql://postgres@127.0.0.1:{postgres.port}/hydrant
      warehouse: s3://{bucket}/warehouse
"""
    h = hydrant_factory(s3_store_yaml(garage) + catalogs + stream_yaml(extra_dest="      catalog: lake\n")).start()
    sent = [record(i) for i in range(800)]
    put(h, sent)
    cat = SqlCatalog(
        "lake", uri=f"postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/hydrant",
        **{"s3.endpoint": garage.endpoint, "s3.access-key-id": garage.key_id,
           "s3.secret-access-key": garage.secret, "s3.region": "garage"})
    got = wait_rows(cat, 800)
    assert sorted(r["id"] for r in got) == sorted(x["id"] for x in sent)
    t = cat.load_table("web.app")
    assert t.metadata_location.startswith(f"s3://{bucket}/warehouse/web/app/metadata/")
    keys = list(read_objects(garage.s3(), bucket, "warehouse/web/app/data/"))
    assert keys and all(k.endswith(".parquet") and "/ts_day=" in k for k in keys)


def test_sigkill_between_commit_and_checkpoint_commits_nothing_twice(hydrant_factory):
    h = hydrant_factory(stream_yaml(shards=1), env={"HYDRANT_FAILPOINT": "iceberg-committed"}).start()
    first = [record(i) for i in range(300)]
    put(h, first)
    wait_until(lambda: h.proc.poll() is not None, timeout=60, what="the daemon to abort after its commit")
    assert "failpoint iceberg-committed" in h.logs()
    cat = local_catalog(h)
    assert len(rows(cat)) == 300, "the commit is in the table; the checkpoint did not move"
    h.env.pop("HYDRANT_FAILPOINT")
    h.start()
    second = [record(i) for i in range(300, 500)]
    put(h, second)
    got = wait_rows(cat, 500)
    time.sleep(3)
    got = rows(cat)
    assert sorted(r["id"] for r in got) == sorted(x["id"] for x in first + second)


def test_sigkill_under_load_every_acknowledged_record_once(hydrant_factory):
    h = hydrant_factory(stream_yaml(commit=1).replace(
        "        - { name: n, type: int64 }\n", "        - { name: pad, type: string }\n").replace(
        ', "identity(tenant)", "bucket(4, user_id)"', "").replace(
        '{ name: ts, type: "timestamp[ms, UTC]", nullable: false }', '{ name: ts, type: "timestamp[ms, UTC]" }')).start()
    p = Producers(h.firehose, stream="app", threads=2, batch=100, pad=100).start()
    for _ in range(5):
        time.sleep(2.5)
        h.kill()
        h.start()
    time.sleep(1)
    p.stop()
    assert len(p.acked) > 1000
    cat = local_catalog(h)

    def all_acked():
        ids = [r["id"] for r in rows(cat)]
        return ids if p.acked <= set(ids) else None

    ids = wait_until(all_acked, timeout=90, what="every acknowledged record in the table")
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} records twice"
    # What the kills left written but never committed is removed, and the
    # table reads the same after.
    assert h.terminate() == 0
    before = sorted(r["id"] for r in rows(cat))
    removed = clean_orphans(h)
    assert clean_orphans(h, "--dry-run") == []
    assert all(not os.path.exists(x.removeprefix("file://")) for x in removed)
    assert sorted(r["id"] for r in rows(cat)) == before


def clean_orphans(h, *args):
    r = subprocess.run([hydrant_bin(), "iceberg", "clean-orphans", "-c", str(h.config), "--stream", "app",
                        "--older-than-secs", "0", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split()[0] for line in r.stdout.splitlines() if not line.startswith(("found", "deleted"))]


def test_files_never_committed_are_orphans_and_clean_orphans_removes_them(hydrant_factory):
    h = hydrant_factory(stream_yaml(shards=1), env={"HYDRANT_FAILPOINT": "iceberg-before-commit"}).start()
    put(h, [record(i) for i in range(100)])
    wait_until(lambda: h.proc.poll() is not None, timeout=60, what="the daemon to abort before its commit")
    written = glob.glob(str(h.data_dir / "iceberg/warehouse/web/app/data/**/*.parquet"), recursive=True)
    assert written and all("-00000000000000000000-00000000000000000099-" in f for f in written)
    # Restarted with a longer buffer, the batch is cut again with the
    # records put since: the first files are never committed.
    h.config.write_text(h.config.read_text().replace("interval_secs: 1", "interval_secs: 4"))
    h.env.pop("HYDRANT_FAILPOINT")
    h.start()
    put(h, [record(i) for i in range(100, 200)])
    cat = local_catalog(h)
    wait_rows(cat, 200)
    assert h.terminate() == 0
    assert sorted(r["id"] for r in rows(cat)) == sorted(f"r{i}" for i in range(200))

    listed = clean_orphans(h, "--dry-run")
    assert sorted(x.removeprefix("file://") for x in listed if x.endswith(".parquet")) == sorted(written)
    assert all(os.path.exists(f) for f in written), "a dry run deletes nothing"
    deleted = clean_orphans(h)
    assert sorted(deleted) == sorted(listed)
    assert not any(os.path.exists(f) for f in written)
    assert clean_orphans(h, "--dry-run") == []
    assert sorted(r["id"] for r in rows(cat)) == sorted(f"r{i}" for i in range(200)), "the table is whole"


def iceberg_request(bucket, **over):
    cfg = {
        "RoleARN": "arn:aws:iam::000000000000:role/firehose",
        "CatalogConfiguration": {"CatalogARN": "arn:aws:glue:us-east-1:000000000000:catalog"},
        "S3Configuration": {"RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": f"arn:aws:s3:::{bucket}",
                            "ErrorOutputPrefix": "failed/"},
        "DestinationTableConfigurationList": [{
            "DestinationDatabaseName": "api", "DestinationTableName": "events",
            "PartitionSpec": {"Identity": [{"SourceName": "tenant"}]}}],
        "TableCreationConfiguration": {"Enabled": True},
        "SchemaEvolutionConfiguration": {"Enabled": True},
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
    }
    cfg.update(over)
    return cfg


def test_firehose_api_creates_the_table_from_records_and_adds_new_fields(hydrant_factory):
    h = hydrant_factory("").start()
    fh = h.firehose()
    fh.create_delivery_stream(DeliveryStreamName="events", IcebergDestinationConfiguration=iceberg_request("errs"))
    d = fh.describe_delivery_stream(DeliveryStreamName="events")["DeliveryStreamDescription"]["Destinations"][0]
    desc = d["IcebergDestinationDescription"]
    assert desc["DestinationTableConfigurationList"][0]["DestinationTableName"] == "events"
    assert desc["DestinationTableConfigurationList"][0]["PartitionSpec"] == {"Identity": [{"SourceName": "tenant"}]}
    assert desc["TableCreationConfiguration"] == {"Enabled": True}
    assert desc["SchemaEvolutionConfiguration"] == {"Enabled": True}

    first = [{"id": f"e{i}", "tenant": "ab"[i % 2], "n": i, "ok": i % 3 == 0} for i in range(200)]
    put(h, first, stream="events")
    cat = local_catalog(h)
    wait_rows(cat, 200, table="api.events")
    later = [{"id": f"e{i}", "tenant": "c", "n": i, "region": "eu-north"} for i in range(200, 300)]
    put(h, later, stream="events")
    got = wait_rows(cat, 300, table="api.events")
    t = cat.load_table("api.events")
    cols = {f.name: str(f.field_type) for f in t.schema().fields}
    assert cols == {"id": "string", "n": "long", "ok": "boolean", "tenant": "string", "region": "string"}
    assert [(f.name, str(f.transform)) for f in t.spec().fields] == [("tenant", "identity")]
    by_id = {r["id"]: r for r in got}
    assert sorted(by_id) == sorted(x["id"] for x in first + later) and len(got) == 300
    assert by_id["e250"]["region"] == "eu-north" and by_id["e10"]["region"] is None
    assert by_id["e3"]["ok"] is True and by_id["e250"]["ok"] is None


@pytest.mark.parametrize("over, message", [
    ({"DestinationTableConfigurationList": []}, "at least one table"),
    ({"DestinationTableConfigurationList": [{"DestinationDatabaseName": "a", "DestinationTableName": "x"},
                                            {"DestinationDatabaseName": "a", "DestinationTableName": "y"}]},
     "MetadataExtractionQuery"),
    ({"AppendOnly": False}, "append-only"),
    ({"CatalogConfiguration": {"CatalogARN": "arn:aws:glue:us-east-1:000000000000:catalog/nope"}}, None),
])
def test_firehose_api_refuses_what_it_cannot_do(hydrant_factory, over, message):
    body = "iceberg:\n  catalogs:\n    lake: { uri: \"sqlite:///lake.db\", warehouse: /tmp/lake-wh }\n"
    h = hydrant_factory(body).start()
    fh = h.firehose()
    with pytest.raises(fh.exceptions.InvalidArgumentException) as e:
        fh.create_delivery_stream(DeliveryStreamName="x", IcebergDestinationConfiguration=iceberg_request("errs", **over))
    assert (message or "`nope`") in str(e.value)
    assert fh.list_delivery_streams()["DeliveryStreamNames"] == []


def routed_stream(name, tables_open_max):
    return f"""  {name}:
    shards: 2
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    encoding:
      format: parquet
      schema:
        - {{ name: id, type: string, nullable: false }}
        - {{ name: kind, type: string }}
        - {{ name: n, type: int64 }}
    destination:
      type: iceberg
      namespace: web
      route: {{ table: .kind }}
      tables_open_max: {tables_open_max}
      commit_interval_secs: 1
"""


def test_two_streams_routed_by_jq_into_three_tables(hydrant_factory):
    h = hydrant_factory("streams:\n" + routed_stream("front", 1) + routed_stream("back", 8)).start()
    # In runs of one table, so that front's one open table changes a few times.
    front = [{"id": f"f{i}", "kind": ["clicks", "views"][i // 150 % 2], "n": i} for i in range(600)]
    back = [{"id": f"b{i}", "kind": ["views", "orders"][i % 2], "n": i} for i in range(400)]
    for i in range(0, 600, 100):
        put(h, front[i:i + 100], stream="front")
        if i < 400:
            put(h, back[i:i + 100], stream="back")
    put(h, [{"id": "no-route", "n": 1}], stream="front")
    put(h, [{"kind": "orders", "n": 2}], stream="back")
    cat = local_catalog(h)
    want = {
        "web.clicks": sorted(x["id"] for x in front if x["kind"] == "clicks"),
        "web.views": sorted(x["id"] for x in front + back if x["kind"] == "views"),
        "web.orders": sorted(x["id"] for x in back if x["kind"] == "orders"),
    }
    for table, ids in want.items():
        wait_rows(cat, len(ids), table=table)
    time.sleep(2)
    for table, ids in want.items():
        assert sorted(r["id"] for r in rows(cat, table)) == ids, table
    assert sorted(t[1] for t in cat.list_tables("web")) == ["clicks", "orders", "views"]

    def error_lines(stream):
        objs = read_objects(None, h.data_dir / "errors" / stream)
        return [json.loads(x) for b in objs.values() for x in b.decode().splitlines()]

    f_errors = wait_until(lambda: error_lines("front") or None, timeout=30, what="front's error output")
    assert [e["errorCode"] for e in f_errors] == ["partitioning-failed"]
    assert "kind" in f_errors[0]["errorMessage"] or "null" in f_errors[0]["errorMessage"]
    b_errors = wait_until(lambda: error_lines("back") or None, timeout=30, what="back's error output")
    assert [e["errorCode"] for e in b_errors] == ["format-conversion-failed"]
    assert "id" in b_errors[0]["errorMessage"], b_errors[0]["errorMessage"]


def test_rest_catalog_against_an_in_test_server_following_the_spec(hydrant_factory, tmp_path):
    from pyiceberg.catalog.rest import RestCatalog as RestClient

    from iceberg_rest import RestCatalog

    server = RestCatalog(tmp_path / "rest").start()
    try:
        catalogs = f"""iceberg:
  catalogs:
    lake:
      type: rest
      uri: {server.uri}
      warehouse: {server.warehouse}
"""
        h = hydrant_factory(catalogs + stream_yaml(extra_dest="      catalog: lake\n")).start()
        sent = [record(i, day=i % 2) for i in range(600)]
        put(h, sent)
        client = RestClient("lake", uri=server.uri)
        got = wait_rows(client, 600)
        time.sleep(3)
        got = rows(client)
        assert sorted(r["id"] for r in got) == sorted(x["id"] for x in sent)
        t = client.load_table("web.app")
        assert [f.name for f in t.spec().fields] == ["ts_day", "tenant", "user_id_bucket"]
        assert all("hydrant.ranges" in s.summary.additional_properties for s in t.snapshots())
        posts = [p for m, p in server.requests if m == "POST" and p.endswith("/tables/app")]
        assert len(posts) == len(t.snapshots()), "one commit request per snapshot"
    finally:
        server.close()


def test_firehose_api_routes_records_to_the_listed_tables(hydrant_factory):
    h = hydrant_factory("").start()
    fh = h.firehose()
    tables = [
        {"DestinationDatabaseName": "shop", "DestinationTableName": "orders",
         "PartitionSpec": {"Identity": [{"SourceName": "region"}]}},
        {"DestinationDatabaseName": "shop", "DestinationTableName": "refunds"},
    ]
    processing = {"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
        {"ParameterName": "MetadataExtractionQuery",
         "ParameterValue": "{destinationDatabaseName: .db, destinationTableName: .kind}"},
        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]}
    fh.create_delivery_stream(DeliveryStreamName="shop", IcebergDestinationConfiguration=iceberg_request(
        "errs", DestinationTableConfigurationList=tables, ProcessingConfiguration=processing))
    recs = [{"id": f"s{i}", "db": "shop", "kind": ["orders", "refunds"][i % 2], "region": "eu" if i % 3 else "us"}
            for i in range(300)]
    put(h, recs + [{"id": "lost", "db": "shop", "kind": "unlisted"}], stream="shop")
    cat = local_catalog(h)
    for kind in ("orders", "refunds"):
        want = sorted(x["id"] for x in recs if x["kind"] == kind)
        got = wait_rows(cat, len(want), table=f"shop.{kind}")
        assert sorted(r["id"] for r in got) == want
    assert [f.name for f in cat.load_table("shop.orders").spec().fields] == ["region"]
    assert cat.load_table("shop.refunds").spec().fields == ()

    def errors():
        objs = read_objects(None, h.data_dir / "buckets" / "errs")
        return [json.loads(x) for b in objs.values() for x in b.decode().splitlines()] or None

    lines = wait_until(errors, timeout=30, what="the unlisted table's record in the error output")
    assert [x["errorCode"] for x in lines] == ["partitioning-failed"]
    assert "DestinationTableConfigurationList" in lines[0]["errorMessage"]
