"""The Kinesis Data Analytics API through the real daemon with boto3's
`kinesisanalytics` client: applications made, described, started, stopped,
changed and deleted; code errors with their statement and line; unknown
streams; schema discovery; exactly-once results across SIGKILLs of an
application made through the API; results landing in Garage as Parquet,
read back with DuckDB."""

from collections import Counter

import pytest
from botocore.exceptions import ClientError

from conftest import s3_store_yaml
from harness import read_objects, wait_until
from test_analytics import close_every_window, crash_and_count, put_in_order, results, trades

ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/analytics"
STREAMS = "kinesis:\n  streams:\n    trades: { shards: 2 }\n    counts: { shards: 2 }\n"

COUNTS_SQL = """CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (TICKER VARCHAR(8), MINUTE_START TIMESTAMP, N BIGINT);
CREATE OR REPLACE PUMP "COUNTS" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM ticker, FLOOR(event_time TO MINUTE), COUNT(*)
  FROM "SOURCE_SQL_STREAM_001"
  GROUP BY ticker, FLOOR(event_time TO MINUTE);
"""


def kinesis_arn(name):
    return f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}"


def input_for(stream="trades"):
    return {
        "NamePrefix": "SOURCE_SQL_STREAM",
        "KinesisStreamsInput": {"ResourceARN": kinesis_arn(stream), "RoleARN": ROLE},
        "InputSchema": {
            "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
            "RecordEncoding": "UTF-8",
            "RecordColumns": [
                {"Name": "TICKER", "SqlType": "VARCHAR(8)", "Mapping": "$.TICKER"},
                {"Name": "PRICE", "SqlType": "DOUBLE", "Mapping": "$.PRICE"},
                {"Name": "EVENT_TIME", "SqlType": "TIMESTAMP", "Mapping": "$.EVENT_TIME"},
            ],
        },
    }


def kinesis_output(stream="counts", name="DESTINATION_SQL_STREAM"):
    return {"Name": name, "KinesisStreamsOutput": {"ResourceARN": kinesis_arn(stream), "RoleARN": ROLE},
            "DestinationSchema": {"RecordFormatType": "JSON"}}


def create(ka, name="counts-app", code=COUNTS_SQL, outputs=None):
    return ka.create_application(ApplicationName=name, ApplicationCode=code, Inputs=[input_for()],
                                 Outputs=outputs if outputs is not None else [kinesis_output()])


def error_of(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def status(ka, name="counts-app"):
    return ka.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationStatus"]


def test_an_application_made_started_stopped_changed_and_deleted_through_boto3(hydrant_factory):
    h = hydrant_factory(STREAMS).start()
    ka, k = h.analytics(), h.kinesis()
    summary = create(ka)["ApplicationSummary"]
    assert summary["ApplicationStatus"] == "READY"
    assert summary["ApplicationARN"].endswith(":application/counts-app")
    assert [a["ApplicationName"] for a in ka.list_applications()["ApplicationSummaries"]] == ["counts-app"]
    d = ka.describe_application(ApplicationName="counts-app")["ApplicationDetail"]
    assert d["ApplicationVersionId"] == 1 and d["ApplicationCode"] == COUNTS_SQL
    assert d["InputDescriptions"][0]["InAppStreamNames"] == ["SOURCE_SQL_STREAM_001"]
    assert d["InputDescriptions"][0]["KinesisStreamsInputDescription"]["ResourceARN"] == kinesis_arn("trades")
    assert d["OutputDescriptions"][0]["Name"] == "DESTINATION_SQL_STREAM"

    ka.start_application(ApplicationName="counts-app", InputConfigurations=[
        {"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}])
    wait_until(lambda: status(ka) == "RUNNING", timeout=20, what="RUNNING")
    code, _ = error_of(lambda: ka.start_application(ApplicationName="counts-app", InputConfigurations=[
        {"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "NOW"}}]))
    assert code == "ResourceInUseException"
    records, expected = trades(600, 3)
    put_in_order(k, records)
    close_every_window(k, 9)
    got = wait_until(lambda: (lambda r: r if len(r) >= len(expected) else None)(results(k)), timeout=60, what="counts")
    assert Counter({(t, m): n for t, m, n in got}) == expected

    # The application runs again after a restart of the daemon.
    assert h.terminate() == 0
    h.start()
    ka = h.analytics()
    wait_until(lambda: status(ka) == "RUNNING", timeout=20, what="RUNNING after a restart")

    # A change is checked as a whole, under the version.
    bad = "CREATE OR REPLACE STREAM \"D\" (N BIGINT);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\"\nSELECT STREAM COUNT(*) FROM \"SOURCE_SQL_STREAM_001\" GROUP BY nope, STEP(ROWTIME BY INTERVAL '1' MINUTE);"
    code, msg = error_of(lambda: ka.update_application(ApplicationName="counts-app", CurrentApplicationVersionId=1,
                                                       ApplicationUpdate={"ApplicationCodeUpdate": bad}))
    assert code == "CodeValidationException" and "statement 2 (line 3" in msg and "nope" in msg.lower(), msg
    code, _ = error_of(lambda: ka.update_application(ApplicationName="counts-app", CurrentApplicationVersionId=7,
                                                     ApplicationUpdate={"ApplicationCodeUpdate": COUNTS_SQL}))
    assert code == "ConcurrentModificationException"
    ka.update_application(ApplicationName="counts-app", CurrentApplicationVersionId=1,
                          ApplicationUpdate={"ApplicationCodeUpdate": COUNTS_SQL.replace("COUNT(*)", "COUNT(price)")})
    assert ka.describe_application(ApplicationName="counts-app")["ApplicationDetail"]["ApplicationVersionId"] == 2

    ka.stop_application(ApplicationName="counts-app")
    assert status(ka) == "READY"
    created = d["CreateTimestamp"]
    ka.delete_application(ApplicationName="counts-app", CreateTimestamp=created)
    assert ka.list_applications()["ApplicationSummaries"] == []
    code, _ = error_of(lambda: ka.describe_application(ApplicationName="counts-app"))
    assert code == "ResourceNotFoundException"
    # Its output takes puts again.
    k.put_record(StreamName="counts", Data=b"x", PartitionKey="x")


def test_bad_applications_are_refused_before_anything_runs(hydrant_factory):
    h = hydrant_factory(STREAMS).start()
    ka = h.analytics()
    code, msg = error_of(lambda: create(ka, code="CREATE OR REPLACE STREAM \"D\" (A INTEGER);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\"\n  SELECT STREAM ticker + 1 FROM \"SOURCE_SQL_STREAM_001\";"))
    assert code == "CodeValidationException" and "statement 2" in msg, msg
    code, msg = error_of(lambda: create(ka, code="CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\" SELECT STREAM FROM WHERE;"))
    assert code == "CodeValidationException" and "line 1" in msg, msg
    code, msg = error_of(lambda: create(ka, outputs=[kinesis_output(stream="nowhere")]))
    assert code == "ResourceNotFoundException" and "nowhere" in msg, msg
    inp = input_for("missing")
    code, _ = error_of(lambda: ka.create_application(ApplicationName="x", ApplicationCode=COUNTS_SQL, Inputs=[inp]))
    assert code == "ResourceNotFoundException"
    inp = input_for()
    inp["InputSchema"]["RecordColumns"][1]["SqlType"] = "FLOAT8000"
    code, msg = error_of(lambda: ka.create_application(ApplicationName="x", ApplicationCode=COUNTS_SQL, Inputs=[inp]))
    assert code == "InvalidArgumentException" and "columns[1]" in msg, msg
    code, msg = error_of(lambda: create(ka, outputs=[kinesis_output(name="NO_SUCH_STREAM")]))
    assert code == "InvalidArgumentException" and "NO_SUCH_STREAM" in msg, msg
    assert ka.list_applications()["ApplicationSummaries"] == []


def test_discover_input_schema_infers_the_columns_of_a_streams_records(hydrant_factory):
    h = hydrant_factory(STREAMS).start()
    ka, k = h.analytics(), h.kinesis()
    records, _ = trades(50, 1)
    put_in_order(k, records)
    r = ka.discover_input_schema(ResourceARN=kinesis_arn("trades"), RoleARN=ROLE,
                                 InputStartingPositionConfiguration={"InputStartingPosition": "TRIM_HORIZON"})
    cols = {c["Name"]: c for c in r["InputSchema"]["RecordColumns"]}
    assert cols["PRICE"]["SqlType"] == "DOUBLE" and cols["PRICE"]["Mapping"] == "$.PRICE"
    assert cols["EVENT_TIME"]["SqlType"] == "TIMESTAMP"
    assert cols["TICKER"]["SqlType"].startswith("VARCHAR")
    assert len(r["RawInputRecords"]) == 50 and len(r["ParsedInputRecords"]) == 50
    # The discovered schema makes a working application.
    ka.create_application(ApplicationName="discovered", ApplicationCode=COUNTS_SQL, Outputs=[kinesis_output()],
                          Inputs=[{**input_for(), "InputSchema": r["InputSchema"]}])
    code, _ = error_of(lambda: ka.discover_input_schema(ResourceARN=kinesis_arn("counts"), RoleARN=ROLE))
    assert code == "UnableToDetectSchemaException"


def test_results_of_an_api_application_land_exactly_once_across_sigkills(hydrant_factory):
    records, expected = trades(3000, 6, seed=5)
    h = hydrant_factory(STREAMS, env={"HYDRANT_FAILPOINT": "analytics.after_checkpoint"}).start()
    ka, k = h.analytics(), h.kinesis()
    create(ka)
    ka.start_application(ApplicationName="counts-app", InputConfigurations=[
        {"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}])
    crash_and_count(h, records, expected, 1500)


def test_results_into_a_delivery_stream_land_in_garage_as_parquet_read_by_duckdb(hydrant_factory, garage, bucket, tmp_path):
    import duckdb

    yaml = s3_store_yaml(garage) + STREAMS + f"""streams:
  minute-counts:
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    encoding:
      format: parquet
      schema:
        - {{ name: TICKER, type: string }}
        - {{ name: MINUTE_START, type: string }}
        - {{ name: N, type: int64 }}
    destination: {{ type: s3, bucket: {bucket}, prefix: "counts/" }}
"""
    h = hydrant_factory(yaml).start()
    ka, k = h.analytics(), h.kinesis()
    out = {"Name": "DESTINATION_SQL_STREAM", "DestinationSchema": {"RecordFormatType": "JSON"},
           "KinesisFirehoseOutput": {"ResourceARN": f"arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/minute-counts", "RoleARN": ROLE}}
    create(ka, outputs=[out])
    ka.start_application(ApplicationName="counts-app", InputConfigurations=[
        {"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}])
    records, expected = trades(800, 4, seed=3)
    put_in_order(k, records)
    close_every_window(k, 9)
    s3 = garage.s3()
    files = tmp_path / "pq"
    files.mkdir()

    def rows():
        objs = read_objects(s3, bucket, "counts/")
        for n, (key, body) in enumerate(objs.items()):
            (files / f"{n}.parquet").write_bytes(body)
        if not objs:
            return None
        got = duckdb.connect().execute(
            f"SELECT TICKER, MINUTE_START, N FROM '{files}/*.parquet' WHERE TICKER <> 'ZZZ'").fetchall()
        return got if len(got) >= len(expected) else None

    got = wait_until(rows, timeout=60, what="the counts as Parquet in Garage")
    assert Counter({(t, m): n for t, m, n in got}) == expected
    assert len(got) == len(expected)
    code, _ = error_of(lambda: h.firehose().put_record(DeliveryStreamName="minute-counts", Record={"Data": b"{}"}))
    assert code == "InvalidArgumentException"
