//! Unit tests of `CreateChannel` requests turned into stream configs.

use serde_json::json;

use super::*;

fn s3_request() -> Value {
    json!({
        "ChannelName": "c",
        "ServiceExecutionRoleARN": "arn:aws:iam::000000000000:role/channels",
        "StreamConfigurationList": [{
            "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/logs",
            "RecordConfiguration": { "RecordFormatType": "JSON" },
        }],
        "S3DestinationConfiguration": {
            "DataFreshnessInSeconds": 60,
            "StorageConfiguration": {
                "BucketARN": "arn:aws:s3:::lake",
                "ExpectedBucketOwner": "000000000000",
                "CompressionType": "GZIP",
                "OutputKeyTemplate": "logs/!{timestamp:yyyy/MM/dd}/",
            },
        },
    })
}

fn tables_request() -> Value {
    json!({
        "ChannelName": "t",
        "ServiceExecutionRoleARN": "arn:aws:iam::000000000000:role/channels",
        "StreamConfigurationList": [{
            "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/logs",
            "RecordConfiguration": { "RecordFormatType": "JSON" },
        }],
        "S3TablesDestinationConfiguration": {
            "DeadLetterQueueS3Configuration": {
                "BucketARN": "arn:aws:s3:::dlq",
                "ExpectedBucketOwner": "000000000000",
                "ErrorOutputPrefix": "bad/",
            },
            "S3TablesConfigurationList": [{
                "TableBucketARN": "arn:aws:s3tables:us-east-1:000000000000:bucket/lake",
                "Namespace": "web",
                "TableName": "events",
                "CompressionType": "SNAPPY",
                "PartitionSpec": { "PartitionFields": [{ "Transform": "TIME_HOUR", "SourceName": "ts" }] },
            }],
        },
    })
}

fn cfg() -> Config {
    Config::embedded_default().unwrap()
}

fn validation(req: &Value) -> Vec<String> {
    match stream_from_channel("c", req, &cfg()) {
        Err(RequestError::Validation(v)) => v,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn invalid_message(req: &Value) -> String {
    match stream_from_channel("c", req, &cfg()) {
        Err(RequestError::Invalid(m)) => m,
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[test]
fn an_s3_channel_reads_its_stream_into_compressed_objects() {
    let s = stream_from_channel("c", &s3_request(), &cfg()).unwrap();
    assert_eq!(
        s.source,
        Source::Kinesis {
            stream: "logs".into()
        }
    );
    assert_eq!(s.compression, Compression::Gzip);
    assert_eq!(s.buffer_interval, Duration::from_secs(60));
    let Destination::Object(d) = &s.destination else {
        panic!("an object destination")
    };
    assert_eq!(d.bucket, "lake");
    assert_eq!(d.prefix.source(), "logs/!{timestamp:yyyy/MM/dd}/");
    // No dead-letter configuration: the destination bucket, under errors/.
    assert_eq!(s.error_output.bucket, "lake");
    assert_eq!(
        s.error_output.error_output_prefix.source(),
        DEFAULT_ERROR_PREFIX
    );
    assert!(matches!(&s.encoding, Encoding::JsonLines { delimiter } if delimiter == b"\n"));

    let mut bytes = s3_request();
    bytes["StreamConfigurationList"][0]["RecordConfiguration"]["RecordFormatType"] =
        json!("BYTE_ARRAY");
    bytes["S3DestinationConfiguration"]
        .as_object_mut()
        .unwrap()
        .remove("DataFreshnessInSeconds");
    let s = stream_from_channel("c", &bytes, &cfg()).unwrap();
    assert!(matches!(&s.encoding, Encoding::JsonLines { delimiter } if delimiter.is_empty()));
    assert_eq!(s.buffer_interval, Duration::from_secs(DATA_FRESHNESS_SECS));
}

#[test]
fn a_tables_channel_writes_an_hour_partitioned_iceberg_table() {
    let s = stream_from_channel("t", &tables_request(), &cfg()).unwrap();
    let Destination::Iceberg(i) = &s.destination else {
        panic!("an Iceberg destination")
    };
    assert_eq!((i.namespace.as_str(), i.table.as_str()), ("web", "events"));
    assert_eq!(i.catalog.name, "hydrant");
    assert_eq!(i.compression, "snappy");
    assert!(i.create_table && i.evolve_schema);
    assert_eq!(i.commit_interval, Duration::from_secs(DATA_FRESHNESS_SECS));
    let fields = i.partition_fields("web", "events");
    assert_eq!(fields.len(), 1);
    assert_eq!(
        (fields[0].column.as_str(), fields[0].transform.as_str()),
        ("ts", "hour")
    );
    assert!(!i.allows("web", "other"));
    assert_eq!(s.error_output.bucket, "dlq");
    assert_eq!(s.error_output.error_output_prefix.source(), "bad/");
}

#[test]
fn missing_and_malformed_fields_are_named_as_the_model_names_them() {
    let mut r = s3_request();
    r.as_object_mut().unwrap().remove("ServiceExecutionRoleARN");
    r["StreamConfigurationList"][0]["StreamARN"] = json!("arn:aws:s3:::nope");
    r["S3DestinationConfiguration"]["StorageConfiguration"]["CompressionType"] = json!("LZ4");
    let v = validation(&r);
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(v[0].contains("'serviceExecutionRoleARN'") && v[0].contains("must not be null"));
    assert!(v[1].contains("'streamConfigurationList.1.member.streamARN'"));
    assert!(v[2].contains("'s3DestinationConfiguration.storageConfiguration.compressionType'"));
    assert!(v[2].contains("[NONE, GZIP, ZSTD]"));

    let mut r = tables_request();
    r["S3TablesDestinationConfiguration"]
        .as_object_mut()
        .unwrap()
        .remove("DeadLetterQueueS3Configuration");
    r["S3TablesDestinationConfiguration"]["S3TablesConfigurationList"][0]["PartitionSpec"]["PartitionFields"]
        [0]["Transform"] = json!("TIME_DAY");
    let v = validation(&r);
    assert!(v[0].contains("'s3TablesDestinationConfiguration.deadLetterQueueS3Configuration'"));
    assert!(v[1].contains("partitionFields.1.member.transform"), "{v:?}");

    let mut r = s3_request();
    r["S3DestinationConfiguration"]["StorageConfiguration"]["ExpectedBucketOwner"] =
        json!("123456789012");
    assert!(validation(&r)[0].contains("belong to account 000000000000"));
}

#[test]
fn what_a_channel_cannot_do_is_an_invalid_argument() {
    let mut both = s3_request();
    both["S3TablesDestinationConfiguration"] =
        tables_request()["S3TablesDestinationConfiguration"].clone();
    assert!(invalid_message(&both).contains("not both"));
    let mut neither = s3_request();
    neither.as_object_mut().unwrap().remove(S3);
    assert!(invalid_message(&neither).contains("not neither"));

    let mut gsr = s3_request();
    gsr["StreamConfigurationList"][0]["RecordConfiguration"]["RecordFormatType"] =
        json!("GSR_JSON");
    assert!(invalid_message(&gsr).contains("only for S3 Tables"));
    let mut string = tables_request();
    string["StreamConfigurationList"][0]["RecordConfiguration"]["RecordFormatType"] =
        json!("STRING");
    assert!(invalid_message(&string).contains("general purpose"));

    let mut two = s3_request();
    let first = two["StreamConfigurationList"][0].clone();
    two["StreamConfigurationList"]
        .as_array_mut()
        .unwrap()
        .push(first);
    assert!(invalid_message(&two).contains("one stream"));

    let mut stale = s3_request();
    stale["S3DestinationConfiguration"]["DataFreshnessInSeconds"] = json!(5000);
    assert!(invalid_message(&stale).contains("DataFreshnessInSeconds 5000"));

    let mut kms = s3_request();
    kms["EncryptionConfiguration"] = json!({ "EncryptionType": "KMS", "KeyId": "k" });
    assert!(invalid_message(&kms).contains("EncryptionConfiguration"));
}

#[test]
fn an_update_sets_the_freshness_of_the_channels_own_destination() {
    let req = s3_request();
    let next = updated_request(
        &req,
        &json!({ "S3DestinationConfiguration": { "DataFreshnessInSeconds": 30 } }),
    )
    .unwrap();
    assert_eq!(next[S3]["DataFreshnessInSeconds"], 30);
    assert_eq!(
        next[S3]["StorageConfiguration"],
        req[S3]["StorageConfiguration"]
    );
    let wrong = updated_request(
        &req,
        &json!({ "S3TablesDestinationConfiguration": { "DataFreshnessInSeconds": 30 } }),
    );
    assert!(matches!(wrong, Err(RequestError::Invalid(m)) if m.contains("cannot change")));
    let missing = updated_request(&req, &json!({ "S3DestinationConfiguration": {} }));
    assert!(
        matches!(missing, Err(RequestError::Validation(v)) if v[0].contains("dataFreshnessInSeconds"))
    );
}
