"""The control-plane operations beyond create/describe/delete, through boto3
and the AWS CLI: Firehose's UpdateDestination (version ids, no record lost
or repeated) and tags; Kinesis's resource tags, limits, account settings,
enhanced monitoring, record size, resource policies."""

import json
import os
import subprocess
import time

import botocore
import pytest

from harness import error_code
from harness import read_objects, records_in, wait_until

ROLE = "arn:aws:iam::000000000000:role/firehose"


def cli(h, service, *args):
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "PATH": os.environ["PATH"]}
    r = subprocess.run(["aws", "--endpoint-url", h.url, service, *args], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip() else {}


def test_update_destination_moves_delivery_without_losing_or_repeating_records(hydrant_factory):
    h = hydrant_factory("").start()
    fh = h.firehose()
    fh.create_delivery_stream(
        DeliveryStreamName="logs",
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::lake", "Prefix": "v1/", "ErrorOutputPrefix": "err/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
        },
        Tags=[{"Key": "team", "Value": "data"}],
    )
    d = fh.describe_delivery_stream(DeliveryStreamName="logs")["DeliveryStreamDescription"]
    assert d["VersionId"] == "1"
    dest = d["Destinations"][0]
    assert dest["ExtendedS3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::lake", "as configured, not a path"
    out = h.data_dir / "buckets" / "lake"

    def put(lo, hi):
        r = fh.put_record_batch(DeliveryStreamName="logs", Records=[{"Data": f"{i}\n".encode()} for i in range(lo, hi)])
        assert r["FailedPutCount"] == 0

    put(0, 300)
    wait_until(lambda: len(records_in(read_objects(None, out, "v1/"))) >= 300, timeout=30, what="300 records under v1/")
    fh.update_destination(
        DeliveryStreamName="logs", CurrentDeliveryStreamVersionId="1", DestinationId=dest["DestinationId"],
        ExtendedS3DestinationUpdate={"Prefix": "v2/", "BufferingHints": {"SizeInMBs": 2, "IntervalInSeconds": 1}},
    )
    d = fh.describe_delivery_stream(DeliveryStreamName="logs")["DeliveryStreamDescription"]
    assert d["VersionId"] == "2"
    assert d["LastUpdateTimestamp"] > d["CreateTimestamp"]
    s3d = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert (s3d["Prefix"], s3d["BufferingHints"]["SizeInMBs"], s3d["ErrorOutputPrefix"]) == ("v2/", 2, "err/")
    put(300, 600)
    wait_until(lambda: len(records_in(read_objects(None, out, "v2/"))) >= 300, timeout=30, what="300 records under v2/")
    time.sleep(2)
    v1 = [int(x) for x in records_in(read_objects(None, out, "v1/"))]
    v2 = [int(x) for x in records_in(read_objects(None, out, "v2/"))]
    assert sorted(v1 + v2) == list(range(600)), "each record once across the update"
    assert set(v2) == set(range(300, 600))

    code, msg = error_code(lambda: fh.update_destination(
        DeliveryStreamName="logs", CurrentDeliveryStreamVersionId="1", DestinationId=dest["DestinationId"],
        ExtendedS3DestinationUpdate={"Prefix": "v3/"}))
    assert code == "ConcurrentModificationException" and "version 2" in msg
    code, _ = error_code(lambda: fh.update_destination(
        DeliveryStreamName="logs", CurrentDeliveryStreamVersionId="2", DestinationId=dest["DestinationId"],
        ExtendedS3DestinationUpdate={"BufferingHints": {"SizeInMBs": 500, "IntervalInSeconds": 1}}))
    assert code == "InvalidArgumentException"
    code, _ = error_code(lambda: fh.update_destination(
        DeliveryStreamName="logs", CurrentDeliveryStreamVersionId="2", DestinationId="destinationId-000000000009",
        ExtendedS3DestinationUpdate={"Prefix": "v3/"}))
    assert code == "InvalidArgumentException"
    assert fh.describe_delivery_stream(DeliveryStreamName="logs")["DeliveryStreamDescription"]["VersionId"] == "2"

    # Kept across a restart, with the tags.
    h.terminate()
    h.start()
    fh = h.firehose()
    d = fh.describe_delivery_stream(DeliveryStreamName="logs")["DeliveryStreamDescription"]
    assert d["VersionId"] == "2" and d["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "v2/"
    assert fh.list_tags_for_delivery_stream(DeliveryStreamName="logs")["Tags"] == [{"Key": "team", "Value": "data"}]


def test_delivery_stream_tags_page_and_are_bounded(hydrant_factory):
    h = hydrant_factory("streams:\n  yaml:\n    destination: { type: file, path: /tmp/hydrant-yaml-tags }\n").start()
    fh = h.firehose()
    fh.create_delivery_stream(DeliveryStreamName="t", ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b1x"})
    fh.tag_delivery_stream(DeliveryStreamName="t", Tags=[{"Key": f"k{i}", "Value": f"v{i}"} for i in range(5)])
    fh.tag_delivery_stream(DeliveryStreamName="t", Tags=[{"Key": "k0", "Value": "changed"}])
    first = fh.list_tags_for_delivery_stream(DeliveryStreamName="t", Limit=2)
    assert first["Tags"] == [{"Key": "k0", "Value": "changed"}, {"Key": "k1", "Value": "v1"}] and first["HasMoreTags"]
    rest = fh.list_tags_for_delivery_stream(DeliveryStreamName="t", ExclusiveStartTagKey="k1")
    assert [t["Key"] for t in rest["Tags"]] == ["k2", "k3", "k4"] and not rest["HasMoreTags"]
    fh.untag_delivery_stream(DeliveryStreamName="t", TagKeys=["k1", "k3"])
    listed = cli(h, "firehose", "list-tags-for-delivery-stream", "--delivery-stream-name", "t")
    assert [t["Key"] for t in listed["Tags"]] == ["k0", "k2", "k4"]
    code, _ = error_code(lambda: fh.tag_delivery_stream(
        DeliveryStreamName="t", Tags=[{"Key": f"x{i}", "Value": ""} for i in range(48)]))
    assert code == "LimitExceededException"
    code, _ = error_code(lambda: fh.tag_delivery_stream(DeliveryStreamName="t", Tags=[{"Key": "aws:x", "Value": "v"}]))
    assert code == "InvalidArgumentException"
    code, _ = error_code(lambda: fh.tag_delivery_stream(DeliveryStreamName="nope", Tags=[{"Key": "a", "Value": "v"}]))
    assert code == "ResourceNotFoundException"
    code, _ = error_code(lambda: fh.tag_delivery_stream(DeliveryStreamName="yaml", Tags=[{"Key": "a", "Value": "v"}]))
    assert code == "ResourceInUseException"
    assert len(fh.list_tags_for_delivery_stream(DeliveryStreamName="t")["Tags"]) == 3


def test_kinesis_resource_tags_and_policies_by_arn(hydrant_factory):
    h = hydrant_factory("").start()
    k = h.kinesis()
    k.create_stream(StreamName="s", ShardCount=1)
    s_arn = k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamARN"]
    c_arn = k.register_stream_consumer(StreamARN=s_arn, ConsumerName="app")["Consumer"]["ConsumerARN"]
    q_arn = k.create_queue(QueueName="q", StreamConfigurationList=[{"StreamARN": s_arn}])["QueueDescription"]["QueueARN"]
    ch_arn = k.create_channel(
        ChannelName="ch", ServiceExecutionRoleARN="arn:aws:iam::000000000000:role/c",
        StreamConfigurationList=[{"StreamARN": s_arn, "RecordConfiguration": {"RecordFormatType": "JSON"}}],
        S3DestinationConfiguration={"StorageConfiguration": {"BucketARN": "arn:aws:s3:::out", "ExpectedBucketOwner": "000000000000", "CompressionType": "NONE"}},
    )["ChannelDescription"]["ChannelARN"]
    for i, arn in enumerate([s_arn, c_arn, q_arn, ch_arn]):
        k.tag_resource(ResourceARN=arn, Tags={"owner": f"o{i}", "tmp": "x"})
        k.untag_resource(ResourceARN=arn, TagKeys=["tmp"])
        assert k.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "owner", "Value": f"o{i}"}]
    # The older stream-tag operations see the same tags.
    assert k.list_tags_for_stream(StreamName="s")["Tags"] == [{"Key": "owner", "Value": "o0"}]
    code, _ = error_code(lambda: k.tag_resource(ResourceARN=q_arn, Tags={f"k{i}": "v" for i in range(50)}))
    assert code == "LimitExceededException"
    code, _ = error_code(lambda: k.tag_resource(ResourceARN="arn:aws:kinesis:us-east-1:000000000000:stream/nope", Tags={"a": "b"}))
    assert code == "ResourceNotFoundException"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kinesis:GetRecords", "Resource": s_arn}]})
    for arn in (s_arn, c_arn, q_arn):
        assert json.loads(k.get_resource_policy(ResourceARN=arn)["Policy"]) == {}
        k.put_resource_policy(ResourceARN=arn, Policy=policy)
        assert k.get_resource_policy(ResourceARN=arn)["Policy"] == policy
    code, _ = error_code(lambda: k.put_resource_policy(ResourceARN=s_arn, Policy="not json"))
    assert code == "InvalidArgumentException"
    # All of it is kept across a restart.
    h.terminate()
    h.start()
    k = h.kinesis()
    for i, arn in enumerate([s_arn, c_arn, q_arn, ch_arn]):
        assert k.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "owner", "Value": f"o{i}"}]
    assert k.get_resource_policy(ResourceARN=q_arn)["Policy"] == policy
    k.delete_resource_policy(ResourceARN=s_arn)
    assert json.loads(k.get_resource_policy(ResourceARN=s_arn)["Policy"]) == {}


def test_limits_account_settings_monitoring_and_record_size(hydrant_factory):
    h = hydrant_factory("kinesis:\n  shards_max: 40\n").start()
    k = h.kinesis()
    k.create_stream(StreamName="p", ShardCount=3)
    k.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    limits = k.describe_limits()
    assert (limits["ShardLimit"], limits["OpenShardCount"], limits["OnDemandStreamCount"]) == (40, 7, 1)
    assert k.describe_account_settings()["MinimumThroughputBillingCommitment"]["Status"] == "DISABLED"
    got = k.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})
    assert got["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED"
    assert k.describe_account_settings()["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED"

    r = k.enable_enhanced_monitoring(StreamName="p", ShardLevelMetrics=["IncomingRecords", "OutgoingRecords"])
    assert r["CurrentShardLevelMetrics"] == [] and r["DesiredShardLevelMetrics"] == ["IncomingRecords", "OutgoingRecords"]
    summary = k.describe_stream_summary(StreamName="p")["StreamDescriptionSummary"]
    assert summary["EnhancedMonitoring"] == [{"ShardLevelMetrics": ["IncomingRecords", "OutgoingRecords"]}]
    put = k.put_record(StreamName="p", Data=b"x", PartitionKey="a")
    shard = str(int(put["ShardId"].split("-")[1]))
    assert h.metric("kinesis_shard_incoming_records", stream="p", shard=shard) == 1
    k.disable_enhanced_monitoring(StreamName="p", ShardLevelMetrics=["ALL"])
    k.put_record(StreamName="p", Data=b"y", PartitionKey="a")
    assert h.metric("kinesis_shard_incoming_records", stream="p", shard=shard) == 1, "off: no longer counted"
    assert h.metric("kinesis_incoming_records", stream="p") == 2

    # Records over 1 MiB once the stream allows them, put and read back whole.
    big = os.urandom(5 << 20)
    code, _ = error_code(lambda: k.put_record(StreamName="p", Data=big, PartitionKey="a"))
    assert code == "ValidationException"
    k.update_max_record_size(StreamARN=summary["StreamARN"], MaxRecordSizeInKiB=10240)
    assert k.describe_stream_summary(StreamName="p")["StreamDescriptionSummary"]["MaxRecordSizeInKiB"] == 10240
    r = k.put_record(StreamName="p", Data=big, PartitionKey="a")
    it = k.get_shard_iterator(StreamName="p", ShardId=r["ShardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
                              StartingSequenceNumber=r["SequenceNumber"])["ShardIterator"]
    assert k.get_records(ShardIterator=it, Limit=1)["Records"][0]["Data"] == big
    blob = h.dir / "two-mib.bin"
    blob.write_bytes(os.urandom(2 << 20))
    cli_put = cli(h, "kinesis", "put-record", "--stream-name", "p", "--partition-key", "b", "--data", f"fileb://{blob}")
    assert cli_put["ShardId"].startswith("shardId-")

    r = k.update_stream_warm_throughput(StreamName="od", WarmThroughputMiBps=100)
    assert r["WarmThroughput"]["TargetMiBps"] == 100
    assert error_code(lambda: k.update_stream_warm_throughput(StreamName="p", WarmThroughputMiBps=1))[0] == "InvalidArgumentException"
    arn = k.describe_stream_summary(StreamName="p")["StreamDescriptionSummary"]["StreamARN"]
    k.update_stream_record_distribution_strategy(StreamARN=arn, RecordDistributionStrategy="USER_PARTITION_KEY")
    code, msg = error_code(lambda: k.update_stream_record_distribution_strategy(StreamARN=arn, RecordDistributionStrategy="AUTO"))
    assert code == "InvalidArgumentException" and "partition key" in msg


def test_http_endpoint_streams_through_the_api_create_describe_update(hydrant_factory):
    from harness import Receiver

    first = Receiver(access_key="k1", attributes={"env": "test"}, gzip_expected=True)
    second = Receiver(access_key="k2", attributes={"env": "test"}, gzip_expected=True)
    try:
        h = hydrant_factory("").start()
        fh = h.firehose()
        config = {
            "EndpointConfiguration": {"Url": first.url, "Name": "first", "AccessKey": "k1"},
            "RequestConfiguration": {"ContentEncoding": "GZIP", "CommonAttributes": [{"AttributeName": "env", "AttributeValue": "test"}]},
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
            "RetryOptions": {"DurationInSeconds": 60},
            "RoleARN": ROLE,
            "S3BackupMode": "FailedDataOnly",
            "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::failed", "ErrorOutputPrefix": "err/"},
        }
        fh.create_delivery_stream(DeliveryStreamName="hook", HttpEndpointDestinationConfiguration=config)
        d = fh.describe_delivery_stream(DeliveryStreamName="hook")["DeliveryStreamDescription"]["Destinations"][0]
        desc = d["HttpEndpointDestinationDescription"]
        assert desc["EndpointConfiguration"] == {"Url": first.url, "Name": "first"}, "the access key is not described"
        assert desc["RequestConfiguration"] == config["RequestConfiguration"]
        assert desc["BufferingHints"] == config["BufferingHints"] and desc["RetryOptions"] == config["RetryOptions"]
        assert desc["S3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::failed"

        def put(lo, hi):
            r = fh.put_record_batch(DeliveryStreamName="hook", Records=[{"Data": json.dumps({"n": i}).encode()} for i in range(lo, hi)])
            assert r["FailedPutCount"] == 0

        put(0, 200)
        wait_until(lambda: len(first.records) >= 200, timeout=30, what="200 records at the first endpoint")
        fh.update_destination(
            DeliveryStreamName="hook", CurrentDeliveryStreamVersionId="1", DestinationId=d["DestinationId"],
            HttpEndpointDestinationUpdate={"EndpointConfiguration": {"Url": second.url, "Name": "second", "AccessKey": "k2"}},
        )
        put(200, 400)
        wait_until(lambda: len(second.records) >= 200, timeout=30, what="200 records at the second endpoint")
        time.sleep(2)
        assert first.violations == [] and second.violations == []
        got = sorted(json.loads(r)["n"] for r in first.records + second.records)
        assert got == list(range(400)), "each record once, at the endpoint of its time"
        desc = fh.describe_delivery_stream(DeliveryStreamName="hook")["DeliveryStreamDescription"]
        assert desc["VersionId"] == "2"
        assert desc["Destinations"][0]["HttpEndpointDestinationDescription"]["EndpointConfiguration"]["Url"] == second.url
        code, _ = error_code(lambda: fh.create_delivery_stream(DeliveryStreamName="bad", HttpEndpointDestinationConfiguration={
            **config, "EndpointConfiguration": {"Url": "ftp://x"}}))
        assert code == "InvalidArgumentException"
        code, msg = error_code(lambda: fh.create_delivery_stream(DeliveryStreamName="parquet", ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::lake", "DataFormatConversionConfiguration": {"Enabled": True}}))
        assert code == "InvalidArgumentException" and "DataFormatConversionConfiguration" in msg
    finally:
        first.close()
        second.close()


def test_the_aws_cli_drives_the_control_plane(hydrant_factory):
    h = hydrant_factory("").start()
    cli(h, "kinesis", "create-stream", "--stream-name", "c", "--shard-count", "2")
    arn = cli(h, "kinesis", "describe-stream-summary", "--stream-name", "c")["StreamDescriptionSummary"]["StreamARN"]
    cli(h, "kinesis", "tag-resource", "--resource-arn", arn, "--tags", "team=data,env=dev")
    cli(h, "kinesis", "untag-resource", "--resource-arn", arn, "--tag-keys", "env")
    assert cli(h, "kinesis", "list-tags-for-resource", "--resource-arn", arn)["Tags"] == [{"Key": "team", "Value": "data"}]
    assert cli(h, "kinesis", "describe-limits")["OpenShardCount"] == 2
    assert cli(h, "kinesis", "describe-account-settings")["MinimumThroughputBillingCommitment"]["Status"] == "DISABLED"
    r = cli(h, "kinesis", "enable-enhanced-monitoring", "--stream-name", "c", "--shard-level-metrics", "ALL")
    assert len(r["DesiredShardLevelMetrics"]) == 7
    cli(h, "kinesis", "update-max-record-size", "--stream-arn", arn, "--max-record-size-in-ki-b", "2048")
    assert cli(h, "kinesis", "describe-stream-summary", "--stream-name", "c")["StreamDescriptionSummary"]["MaxRecordSizeInKiB"] == 2048
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kinesis:*", "Resource": arn}]})
    cli(h, "kinesis", "put-resource-policy", "--resource-arn", arn, "--policy", policy)
    assert cli(h, "kinesis", "get-resource-policy", "--resource-arn", arn)["Policy"] == policy

    cli(h, "firehose", "create-delivery-stream", "--delivery-stream-name", "f",
        "--extended-s3-destination-configuration", json.dumps({"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::cli-out", "Prefix": "a/"}),
        "--tags", "Key=owner,Value=cli")
    d = cli(h, "firehose", "describe-delivery-stream", "--delivery-stream-name", "f")["DeliveryStreamDescription"]
    cli(h, "firehose", "update-destination", "--delivery-stream-name", "f", "--current-delivery-stream-version-id", d["VersionId"],
        "--destination-id", d["Destinations"][0]["DestinationId"], "--extended-s3-destination-update", json.dumps({"Prefix": "b/"}))
    d = cli(h, "firehose", "describe-delivery-stream", "--delivery-stream-name", "f")["DeliveryStreamDescription"]
    assert d["VersionId"] == "2" and d["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "b/"
    cli(h, "firehose", "tag-delivery-stream", "--delivery-stream-name", "f", "--tags", "Key=stage,Value=test")
    tags = cli(h, "firehose", "list-tags-for-delivery-stream", "--delivery-stream-name", "f")["Tags"]
    assert tags == [{"Key": "owner", "Value": "cli"}, {"Key": "stage", "Value": "test"}]


def test_create_then_describe_returns_every_field_as_sent(hydrant_factory):
    h = hydrant_factory("").start()
    fh = h.firehose()
    s3 = {
        "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::round", "Prefix": "data/!{partitionKeyFromQuery:kind}/",
        "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/", "CompressionFormat": "GZIP",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
        "CloudWatchLoggingOptions": {"Enabled": True, "LogGroupName": "g", "LogStreamName": "s"},
        "DynamicPartitioningConfiguration": {"Enabled": True, "RetryOptions": {"DurationInSeconds": 300}},
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
            {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{kind: .kind}"},
            {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]},
        "FileExtension": ".json.gz",
    }
    iceberg = {
        "RoleARN": ROLE,
        "DestinationTableConfigurationList": [
            {"DestinationDatabaseName": "web", "DestinationTableName": "a"},
            {"DestinationDatabaseName": "web", "DestinationTableName": "b", "PartitionSpec": {"Identity": [{"SourceName": "tenant"}]}},
        ],
        "CatalogConfiguration": {"CatalogARN": "arn:aws:glue:us-east-1:000000000000:catalog"},
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
            {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{destinationDatabaseName: \"web\", destinationTableName: .t}"}]}]},
        "TableCreationConfiguration": {"Enabled": True},
        "SchemaEvolutionConfiguration": {"Enabled": False},
        "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 30},
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::ice-errors", "ErrorOutputPrefix": "e/"},
    }
    fh.create_delivery_stream(DeliveryStreamName="s3", ExtendedS3DestinationConfiguration=s3)
    fh.create_delivery_stream(DeliveryStreamName="ice", IcebergDestinationConfiguration=iceberg)
    for name, key, sent in (("s3", "ExtendedS3DestinationDescription", s3), ("ice", "IcebergDestinationDescription", iceberg)):
        desc = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["Destinations"][0][key]
        for field, value in sent.items():
            got = desc["S3DestinationDescription"] if field == "S3Configuration" else desc.get(field)
            if field == "S3Configuration":
                assert {k: got.get(k) for k in value} == value, (name, field, got)
            else:
                assert got == value, (name, field, got)
