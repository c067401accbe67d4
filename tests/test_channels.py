"""Kinesis channels (CreateChannel … DeleteChannel) through boto3: a Kinesis
stream delivered into Garage objects or into an Iceberg table read back by
pyiceberg, updated, restarted by SIGKILL, listed, refused when malformed."""

import base64
import json
import time

import botocore
import pytest
from botocore.config import Config as BotoConfig

from conftest import s3_store_yaml
from harness import error_code
from harness import read_objects, records_in, wait_until

ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/channels"


def stream_arn(name):
    return f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}"


def source(stream, fmt="JSON"):
    return [{"StreamARN": stream_arn(stream), "RecordConfiguration": {"RecordFormatType": fmt}}]


def s3_destination(bucket, freshness=1, compression="GZIP", template="logs/"):
    return {
        "DataFreshnessInSeconds": freshness,
        "StorageConfiguration": {
            "BucketARN": f"arn:aws:s3:::{bucket}", "ExpectedBucketOwner": ACCOUNT,
            "CompressionType": compression, "OutputKeyTemplate": template, "StorageClass": "STANDARD",
        },
    }


def put(k, stream, lo, hi, make=lambda i: {"n": i}):
    for start in range(lo, hi, 500):
        recs = [{"Data": json.dumps(make(i)).encode(), "PartitionKey": f"u{i % 40}"} for i in range(start, min(hi, start + 500))]
        assert k.put_records(StreamName=stream, Records=recs)["FailedRecordCount"] == 0


def test_a_channel_delivers_a_stream_into_garage_through_update_and_sigkill(hydrant_factory, garage, bucket):
    h = hydrant_factory(s3_store_yaml(garage)).start()
    k = h.kinesis()
    k.create_stream(StreamName="logs", ShardCount=2)
    created = k.create_channel(
        ChannelName="logs-to-lake", ServiceExecutionRoleARN=ROLE,
        StreamConfigurationList=source("logs"), S3DestinationConfiguration=s3_destination(bucket),
        Tags={"team": "data"},
    )["ChannelDescription"]
    arn = created["ChannelARN"]
    assert arn == f"arn:aws:kinesis:us-east-1:{ACCOUNT}:channel/logs-to-lake"
    assert created["ChannelStatus"] == "ACTIVE" and len(created["ChannelId"]) == 32
    assert created["S3DestinationConfiguration"]["StorageConfiguration"]["CompressionType"] == "GZIP"
    assert created["S3DestinationConfiguration"]["DeadLetterQueueS3Configuration"]["BucketARN"] == f"arn:aws:s3:::{bucket}"
    assert created["StreamConfigurationList"][0]["StreamARN"] == stream_arn("logs")

    s3 = garage.s3()

    def delivered(n):
        objects = read_objects(s3, bucket, "logs/")
        assert all(key.endswith(".gz") for key in objects), list(objects)
        lines = records_in(objects)
        return lines if len(lines) >= n else None

    put(k, "logs", 0, 2000)
    lines = wait_until(lambda: delivered(2000), timeout=60, what="2000 records in Garage")
    assert sorted(json.loads(x)["n"] for x in lines) == list(range(2000))

    # A new freshness: the delivery drains and restarts, nothing lost or twice.
    updated = k.update_channel(ChannelARN=arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 2})["ChannelDescription"]
    assert updated["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 2
    assert updated["ChannelId"] == created["ChannelId"]
    put(k, "logs", 2000, 3000)
    lines = wait_until(lambda: delivered(3000), timeout=60, what="3000 records in Garage")
    time.sleep(3)
    ns = [json.loads(x)["n"] for x in records_in(read_objects(s3, bucket, "logs/"))]
    assert sorted(ns) == list(range(3000)), "each record once across the update"

    # SIGKILL: the channel comes back with its update and its checkpoints.
    h.kill()
    h.start()
    k = h.kinesis()
    d = k.describe_channel(ChannelARN=arn)["ChannelDescription"]
    assert d["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 2
    assert d["ChannelCreationTimestamp"] == created["ChannelCreationTimestamp"]
    put(k, "logs", 3000, 3500)
    wait_until(lambda: delivered(3500), timeout=60, what="3500 records in Garage")
    ns = [json.loads(x)["n"] for x in records_in(read_objects(s3, bucket, "logs/"))]
    assert sorted(set(ns)) == list(range(3500))
    assert len(ns) <= 3500 + 500, "at most the last unacknowledged batch again"
    assert h.metric("delivery_records", stream="logs-to-lake") >= 500

    # Channels are not delivery streams to the Firehose API, but take their names.
    fh = h.firehose()
    assert fh.list_delivery_streams()["DeliveryStreamNames"] == []
    assert error_code(lambda: fh.describe_delivery_stream(DeliveryStreamName="logs-to-lake"))[0] == "ResourceNotFoundException"
    code, msg = error_code(lambda: fh.create_delivery_stream(
        DeliveryStreamName="logs-to-lake",
        ExtendedS3DestinationConfiguration={"BucketARN": f"arn:aws:s3:::{bucket}", "RoleARN": ROLE},
    ))
    assert code == "ResourceInUseException" and "channel" in msg

    # The stream cannot be deleted under its channel; after the channel, it can.
    code, msg = error_code(lambda: k.delete_stream(StreamName="logs"))
    assert code == "ResourceInUseException" and "channel logs-to-lake" in msg
    k.delete_channel(ChannelARN=arn)
    assert error_code(lambda: k.describe_channel(ChannelARN=arn))[0] == "ResourceNotFoundException"
    assert error_code(lambda: k.delete_channel(ChannelARN=arn))[0] == "ResourceNotFoundException"
    wait_until(lambda: not (h.data_dir / "kinesis/logs/checkpoints/firehose-logs-to-lake").exists(), timeout=30, what="the channel's checkpoints removed")
    k.delete_stream(StreamName="logs")


def test_a_channel_writes_an_iceberg_table_partitioned_by_hour(hydrant_factory):
    from pyiceberg.catalog.sql import SqlCatalog

    h = hydrant_factory("").start()
    k = h.kinesis()
    k.create_stream(StreamName="clicks", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    arn = k.create_channel(
        ChannelName="clicks-table", ServiceExecutionRoleARN=ROLE, StreamConfigurationList=source("clicks"),
        S3TablesDestinationConfiguration={
            "DataFreshnessInSeconds": 2,
            "DeadLetterQueueS3Configuration": {"BucketARN": "arn:aws:s3:::dead", "ExpectedBucketOwner": ACCOUNT, "ErrorOutputPrefix": "bad/"},
            "S3TablesConfigurationList": [{
                "TableBucketARN": f"arn:aws:s3tables:us-east-1:{ACCOUNT}:bucket/lake",
                "Namespace": "web", "TableName": "clicks", "CompressionType": "ZSTD",
                "PartitionSpec": {"PartitionFields": [{"Transform": "TIME_HOUR", "SourceName": "ts"}]},
            }],
        },
    )["ChannelDescription"]["ChannelARN"]
    summary = k.list_channels()["ChannelSummaries"]
    assert [(c["ChannelName"], c["ChannelDestinationType"]) for c in summary] == [("clicks-table", "S3_TABLES")]

    def click(i):
        return {"ts": f"2026-12-02T{10 + i % 3:02d}:{i % 60:02d}:00Z", "user": f"u{i % 9}", "n": i}

    put(k, "clicks", 0, 1200, click)
    # Not JSON: the table cannot take it; it goes to the dead-letter bucket.
    k.put_record(StreamName="clicks", Data=b"not json", PartitionKey="x")
    d = h.data_dir / "iceberg"
    wait_until(lambda: (d / "catalog.db").exists(), timeout=60, what="the catalog")
    catalog = SqlCatalog("hydrant", uri=f"sqlite:///{d}/catalog.db", warehouse=f"file://{d}/warehouse")

    def rows():
        try:
            got = catalog.load_table("web.clicks").scan().to_arrow().to_pylist()
        except Exception:  # noqa: BLE001 - not created yet
            return None
        return got if len(got) >= 1200 else None

    got = wait_until(rows, timeout=90, what="1200 rows in web.clicks")
    assert sorted(r["n"] for r in got) == list(range(1200))
    t = catalog.load_table("web.clicks")
    assert str(t.schema().find_field("ts").field_type) == "timestamptz"
    fields = t.spec().fields
    assert [(f.name, str(f.transform)) for f in fields] == [("ts_hour", "hour")]
    assert t.properties.get("write.parquet.compression-codec") == "zstd"
    partitions = {tuple(p["partition"].values()) for p in t.inspect.partitions().to_pylist()}
    assert len(partitions) == 3, partitions
    one_hour = t.scan(row_filter="ts >= '2026-12-02T11:00:00+00:00' and ts < '2026-12-02T12:00:00+00:00'").to_arrow()
    assert sorted(one_hour.column("n").to_pylist()) == [i for i in range(1200) if i % 3 == 1]

    dead = wait_until(lambda: read_objects(None, h.data_dir / "buckets" / "dead", "bad/") or None, timeout=60, what="the dead letter")
    bad = [json.loads(x) for x in records_in(dead)]
    assert [b["errorCode"] for b in bad] == ["format-conversion-failed"]
    assert base64.b64decode(bad[0]["rawData"]) == b"not json"

    k.delete_channel(ChannelARN=arn)
    assert k.list_channels()["ChannelSummaries"] == []


def test_channels_are_listed_by_stream_and_page(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    for s in ("a", "b"):
        k.create_stream(StreamName=s, ShardCount=1)
    for name, s in (("c1", "a"), ("c2", "b"), ("c3", "a")):
        k.create_channel(ChannelName=name, ServiceExecutionRoleARN=ROLE, StreamConfigurationList=source(s, "STRING"),
                         S3DestinationConfiguration=s3_destination("out", 60, "NONE"))
    names, token = [], None
    while True:
        page = k.list_channels(MaxResults=1, **({"NextToken": token} if token else {}))
        names += [c["ChannelName"] for c in page["ChannelSummaries"]]
        assert len(page["ChannelSummaries"]) <= 1
        token = page.get("NextToken")
        if not token:
            break
    assert names == ["c1", "c2", "c3"]
    on_a = k.list_channels(StreamFilter=[{"StreamARN": stream_arn("a")}])["ChannelSummaries"]
    assert [c["ChannelName"] for c in on_a] == ["c1", "c3"]
    assert on_a[0]["Streams"][0]["StreamARN"] == stream_arn("a")
    assert error_code(lambda: k.list_channels(NextToken="bogus"))[0] == "InvalidArgumentException"
    # Kept across a clean restart too.
    h.terminate()
    h.start()
    assert [c["ChannelName"] for c in h.kinesis().list_channels()["ChannelSummaries"]] == ["c1", "c2", "c3"]


def test_channel_requests_that_cannot_be_served_are_refused_with_the_field_named(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=1)
    import boto3

    # boto3 checks required members itself; without that, Hydrant must.
    unchecked = boto3.client("kinesis", endpoint_url=h.url, region_name="us-east-1", aws_access_key_id="test",
                             aws_secret_access_key="test", config=BotoConfig(parameter_validation=False, retries={"total_max_attempts": 1}))
    code, msg = error_code(lambda: unchecked.create_channel(ChannelName="x", StreamConfigurationList=source("s"),
                                                            S3DestinationConfiguration=s3_destination("out")))
    assert code == "ValidationException" and "'serviceExecutionRoleARN'" in msg
    code, msg = error_code(lambda: k.create_channel(ChannelName="x", ServiceExecutionRoleARN="not-a-role",
                                                    StreamConfigurationList=source("s", "XML"), S3DestinationConfiguration=s3_destination("out", compression="LZ4")))
    assert code == "ValidationException" and msg.startswith("3 validation errors detected")
    assert "recordFormatType" in msg and "compressionType" in msg and "serviceExecutionRoleARN" in msg
    code, msg = error_code(lambda: k.create_channel(ChannelName="bad name", ServiceExecutionRoleARN=ROLE,
                                                    StreamConfigurationList=source("s"), S3DestinationConfiguration=s3_destination("out")))
    assert code == "ValidationException" and "channelName" in msg
    code, msg = error_code(lambda: k.create_channel(ChannelName="x", ServiceExecutionRoleARN=ROLE,
                                                    StreamConfigurationList=source("s")))
    assert code == "InvalidArgumentException" and "neither" in msg
    code, msg = error_code(lambda: k.create_channel(ChannelName="x", ServiceExecutionRoleARN=ROLE,
                                                    StreamConfigurationList=source("s", "GSR_JSON"), S3DestinationConfiguration=s3_destination("out")))
    assert code == "InvalidArgumentException" and "GSR_JSON" in msg
    code, _ = error_code(lambda: k.create_channel(ChannelName="x", ServiceExecutionRoleARN=ROLE,
                                                  StreamConfigurationList=source("missing"), S3DestinationConfiguration=s3_destination("out")))
    assert code == "ResourceNotFoundException"
    k.create_channel(ChannelName="x", ServiceExecutionRoleARN=ROLE, StreamConfigurationList=source("s"), S3DestinationConfiguration=s3_destination("out"))
    code, _ = error_code(lambda: k.create_channel(ChannelName="x", ServiceExecutionRoleARN=ROLE,
                                                  StreamConfigurationList=source("s"), S3DestinationConfiguration=s3_destination("out")))
    assert code == "ResourceInUseException"
    arn = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:channel/x"
    code, msg = error_code(lambda: k.update_channel(ChannelARN=arn, S3TablesDestinationConfiguration={"DataFreshnessInSeconds": 5}))
    assert code == "InvalidArgumentException" and "cannot change" in msg
    code, msg = error_code(lambda: k.update_channel(ChannelARN=arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 100000}))
    assert code == "InvalidArgumentException" and "DataFreshnessInSeconds" in msg
    assert k.describe_channel(ChannelARN=arn)["ChannelDescription"]["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 1
    code, _ = error_code(lambda: k.describe_channel(ChannelARN="arn:aws:kinesis:us-east-1:000000000000:stream/s"))
    assert code == "ValidationException"
    assert error_code(lambda: k.describe_channel(ChannelARN=f"arn:aws:kinesis:us-east-1:{ACCOUNT}:channel/nope"))[0] == "ResourceNotFoundException"
    # Nothing refused was created.
    assert [c["ChannelName"] for c in k.list_channels()["ChannelSummaries"]] == ["x"]
