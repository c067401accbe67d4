"""Acknowledged means durable: SIGKILL while producers send, restart, and
every acknowledged record is delivered."""

import base64
import json
import threading
import time

from conftest import s3_store_yaml
from harness import read_objects, records_in, wait_until


def producer(h, stop, acked, worker, errors):
    fh = h.firehose()
    n = 0
    while not stop.is_set():
        ids = [f"{worker}-{n + i}" for i in range(100)]
        n += 100
        try:
            r = fh.put_record_batch(
                DeliveryStreamName="app",
                Records=[{"Data": json.dumps({"id": x, "pad": "p" * 200}).encode()} for x in ids],
            )
        except Exception as e:  # noqa: BLE001 - the daemon is being killed
            errors.append(type(e).__name__)
            time.sleep(0.05)
            continue
        for x, resp in zip(ids, r["RequestResponses"]):
            if "RecordId" in resp:
                acked.add(x)


def test_sigkill_while_sending_loses_nothing_acknowledged(hydrant_factory, garage, bucket):
    cfg = s3_store_yaml(garage) + f"""streams:
  app:
    shards: 4
    buffering: {{ size_mb: 1, interval_secs: 1 }}
    compression: gzip
    destination: {{ type: s3, bucket: {bucket}, prefix: logs/ }}
"""
    h = hydrant_factory(cfg).start()
    acked, errors, stop = set(), [], threading.Event()
    threads = [threading.Thread(target=producer, args=(h, stop, acked, w, errors)) for w in range(3)]
    for t in threads:
        t.start()
    for round_ in range(3):
        time.sleep(1.5)
        h.kill()
        time.sleep(0.3)
        h.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 1000, f"only {len(acked)} records were acknowledged"
    assert errors, "the producers never saw the daemon die; the test did not kill it under load"

    s3 = garage.s3()

    def all_delivered():
        got = [json.loads(x)["id"] for x in records_in(read_objects(s3, bucket))]
        return got if acked <= set(got) else None

    got = wait_until(all_delivered, timeout=60, what="every acknowledged record in Garage")
    dupes = len(got) - len(set(got))
    print(f"acknowledged {len(acked)}, delivered {len(set(got))} distinct, {dupes} duplicates, {len(errors)} failed calls")
    assert h.terminate() == 0


def test_api_created_stream_survives_restart(hydrant_factory, garage, bucket):
    h = hydrant_factory(s3_store_yaml(garage) + "streams: {}\n").start()
    fh = h.firehose()
    arn = fh.create_delivery_stream(
        DeliveryStreamName="api-stream",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::000000000000:role/firehose",
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "api/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
            "CompressionFormat": "GZIP",
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]},
        },
    )["DeliveryStreamARN"]
    assert arn.endswith(":deliverystream/api-stream")
    e = None
    try:
        fh.create_delivery_stream(DeliveryStreamName="api-stream", ExtendedS3DestinationConfiguration={"RoleARN": "r", "BucketARN": f"arn:aws:s3:::{bucket}"})
    except fh.exceptions.ResourceInUseException as err:
        e = err
    assert e is not None

    d = fh.describe_delivery_stream(DeliveryStreamName="api-stream")["DeliveryStreamDescription"]
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["BucketARN"] == f"arn:aws:s3:::{bucket}"
    assert ext["BufferingHints"] == {"SizeInMBs": 1, "IntervalInSeconds": 1}
    assert ext["CompressionFormat"] == "GZIP"

    fh.put_record_batch(DeliveryStreamName="api-stream", Records=[{"Data": json.dumps({"n": i}).encode()} for i in range(10)])
    h.kill()
    h.start()
    fh = h.firehose()
    assert fh.list_delivery_streams()["DeliveryStreamNames"] == ["api-stream"]
    fh.put_record_batch(DeliveryStreamName="api-stream", Records=[{"Data": json.dumps({"n": i}).encode()} for i in range(10, 20)])
    s3 = garage.s3()

    def delivered():
        lines = records_in(read_objects(s3, bucket, "api/"))
        return lines if len({json.loads(x)["n"] for x in lines}) == 20 else None

    lines = wait_until(delivered, timeout=30, what="20 records of the API stream")
    assert all(k.endswith(".gz") for k in read_objects(s3, bucket, "api/"))
    assert {json.loads(x)["n"] for x in lines} == set(range(20))

    fh.delete_delivery_stream(DeliveryStreamName="api-stream")
    try:
        fh.describe_delivery_stream(DeliveryStreamName="api-stream")
        raise AssertionError("deleted stream still described")
    except fh.exceptions.ResourceNotFoundException:
        pass
    h.terminate()
    h.start()
    assert h.firehose().list_delivery_streams()["DeliveryStreamNames"] == []


def test_api_created_stream_partitions_dynamically_as_firehose_does(hydrant_factory, garage, bucket):
    # The request Firehose's console, Terraform and the SDKs send for dynamic
    # partitioning: a MetadataExtraction processor whose jq query yields the
    # keys the Prefix names.
    h = hydrant_factory(s3_store_yaml(garage) + "streams: {}\n").start()
    fh = h.firehose()
    dest = {
        "RoleARN": "arn:aws:iam::000000000000:role/firehose",
        "BucketARN": f"arn:aws:s3:::{bucket}",
        "Prefix": "dp/customer=!{partitionKeyFromQuery:customer}/kind=!{partitionKeyFromQuery:kind}/",
        "ErrorOutputPrefix": "dp-errors/!{firehose:error-output-type}/",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 1},
        "DynamicPartitioningConfiguration": {"Enabled": True, "RetryOptions": {"DurationInSeconds": 300}},
        "ProcessingConfiguration": {"Enabled": True, "Processors": [
            {"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer: .customer_id, kind: .event.kind}"},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
            {"Type": "AppendDelimiterToRecord", "Parameters": []}]},
    }
    fh.create_delivery_stream(DeliveryStreamName="dp", ExtendedS3DestinationConfiguration=dest)
    ext = fh.describe_delivery_stream(DeliveryStreamName="dp")["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert ext["ProcessingConfiguration"]["Processors"][0]["Type"] == "MetadataExtraction"

    sent = [{"customer_id": f"c{i % 3}", "event": {"kind": ["view", "buy"][i % 2]}, "n": i} for i in range(60)]
    bad = [{"customer_id": "c9", "n": 100}]  # no event.kind: cannot be partitioned
    r = fh.put_record_batch(DeliveryStreamName="dp", Records=[{"Data": json.dumps(x).encode()} for x in sent + bad])
    assert r["FailedPutCount"] == 0
    s3 = garage.s3()

    def delivered():
        objs = read_objects(s3, bucket, "dp/")
        n = sum(len(records_in({k: v})) for k, v in objs.items())
        return objs if n >= len(sent) else None

    objs = wait_until(delivered, timeout=30, what="the partitioned records")
    got = 0
    for key, body in objs.items():
        for line in records_in({key: body}):
            x = json.loads(line)
            assert key.startswith(f"dp/customer={x['customer_id']}/kind={x['event']['kind']}/"), key
            got += 1
    assert got == len(sent)
    assert len({k.rsplit("/", 1)[0] for k in objs}) == 6
    errs = wait_until(lambda: records_in(read_objects(s3, bucket, "dp-errors/")) or None, timeout=30,
                      what="the record without a key in the error output")
    row = json.loads(errs[0])
    assert json.loads(base64.b64decode(row["rawData"])) == bad[0]
    assert row["errorCode"] == "partitioning-failed" and "kind" in row["errorMessage"], row

    # Requests Firehose refuses, refused with its exception and the reason.
    def refused(**changes):
        d = {**dest, **changes}
        try:
            fh.create_delivery_stream(DeliveryStreamName="dp-bad", ExtendedS3DestinationConfiguration=d)
        except fh.exceptions.InvalidArgumentException as e:
            return str(e)
        raise AssertionError(f"accepted {changes}")

    assert "DynamicPartitioningConfiguration" in refused(DynamicPartitioningConfiguration={"Enabled": False})
    assert "MetadataExtractionQuery" in refused(ProcessingConfiguration={"Enabled": True, "Processors": []})
    assert "MetadataExtractionQuery" in refused(ProcessingConfiguration={"Enabled": True, "Processors": [
        {"Type": "MetadataExtraction", "Parameters": [{"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer: .a"}]}]})
    assert "partitionKeyFromQuery" in refused(Prefix="dp/")
    assert fh.list_delivery_streams()["DeliveryStreamNames"] == ["dp"]

    # The stream comes back partitioned after a restart.
    h.kill()
    h.start()
    fh = h.firehose()
    fh.put_record_batch(DeliveryStreamName="dp", Records=[{"Data": json.dumps({"customer_id": "late", "event": {"kind": "view"}}).encode()}])
    wait_until(lambda: read_objects(s3, bucket, "dp/customer=late/kind=view/") or None, timeout=30,
               what="a record partitioned after the restart")


def test_yaml_stream_cannot_be_deleted_and_wins_name_clash(hydrant_factory, tmp_path):
    h = hydrant_factory(f"streams:\n  app:\n    destination: {{ type: file, path: {tmp_path / 'out'} }}\n").start()
    fh = h.firehose()
    try:
        fh.delete_delivery_stream(DeliveryStreamName="app")
        raise AssertionError("a YAML stream was deleted")
    except fh.exceptions.ResourceInUseException as e:
        assert "configuration file" in str(e)
    try:
        fh.create_delivery_stream(DeliveryStreamName="app", ExtendedS3DestinationConfiguration={"RoleARN": "r", "BucketARN": "arn:aws:s3:::bucket-x"})
        raise AssertionError("created over a YAML stream")
    except fh.exceptions.ResourceInUseException:
        pass
    try:
        fh.create_delivery_stream(DeliveryStreamName="x", SplunkDestinationConfiguration={"HECEndpoint": "https://example.com", "HECEndpointType": "Raw", "HECToken": "t", "S3Configuration": {"RoleARN": "r", "BucketARN": "arn:aws:s3:::bucket-b"}})
        raise AssertionError("accepted an unsupported destination")
    except fh.exceptions.InvalidArgumentException as e:
        assert "not supported" in str(e)
