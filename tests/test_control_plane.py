"""The control-plane operations beyond create/describe/delete, through boto3
and the AWS CLI: Firehose's UpdateDestination (version ids, no record lost
or repeated) and tags; Kinesis's resource tags, limits, account settings,
enhanced monitoring, record size, resource policies."""

import base64
import json
import os
import subprocess
import time

import botocore
import pytest

from harness import read_objects, records_in, wait_until

ROLE = "arn:aws:iam::000000000000:role/firehose"


def error_code(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


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
