//! AWS naming: the region and account Hydrant answers as, the ARNs of its
//! resources (delivery streams, Kinesis streams and their consumers, S3
//! buckets, IAM roles), and the name rules of each.
//!
//! This is the ground floor: it imports nothing of Hydrant's, and every
//! layer that has to name a resource the way AWS does (the APIs, the sinks
//! that send a stream's ARN, the stream model) takes the name from here.

/// The region every ARN and error message names.
pub const REGION: &str = "us-east-1";
/// The account every ARN and error message names.
pub const ACCOUNT: &str = "000000000000";

/// Longest delivery stream name (Firehose's `DeliveryStreamName`).
pub const DELIVERY_STREAM_NAME_CHARS_MAX: usize = 64;
/// Longest Kinesis stream name (Kinesis's `StreamName`).
pub const KINESIS_STREAM_NAME_CHARS_MAX: usize = 128;
/// Longest consumer name (Kinesis's `ConsumerName`).
pub const CONSUMER_NAME_CHARS_MAX: usize = 128;
/// Longest channel name (Kinesis's `ChannelName`).
pub const CHANNEL_NAME_CHARS_MAX: usize = 128;

/// True for 1 to `max` characters of `[a-zA-Z0-9_.-]`, the rule Firehose
/// and Kinesis share for their names.
fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// True if `name` follows Firehose's delivery stream name rules (1–64 of
/// `[a-zA-Z0-9_.-]`).
pub fn valid_delivery_stream_name(name: &str) -> bool {
    valid_name(name, DELIVERY_STREAM_NAME_CHARS_MAX)
}

/// True if `name` is a valid Kinesis stream name (1–128 of `[a-zA-Z0-9_.-]`).
pub fn valid_kinesis_stream_name(name: &str) -> bool {
    valid_name(name, KINESIS_STREAM_NAME_CHARS_MAX)
}

/// True if `name` is a valid Kinesis consumer name (1–128 of `[a-zA-Z0-9_.-]`).
pub fn valid_consumer_name(name: &str) -> bool {
    valid_name(name, CONSUMER_NAME_CHARS_MAX)
}

/// True if `name` is a valid channel name (1–128 of `[a-zA-Z0-9_.-]`).
pub fn valid_channel_name(name: &str) -> bool {
    valid_name(name, CHANNEL_NAME_CHARS_MAX)
}

/// True if `name` is a valid S3 bucket name (3–63 of `a-z0-9.-`, starting and
/// ending with a letter or digit).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
        && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// The ARN of a delivery stream.
pub fn delivery_stream_arn(name: &str) -> String {
    format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}")
}

/// The ARN of a Kinesis stream.
pub fn kinesis_stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
}

/// The ARN of a Kinesis channel.
pub fn channel_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:channel/{name}")
}

/// The channel a channel ARN (`arn:aws:kinesis:REGION:ACCOUNT:channel/NAME`)
/// names.
pub fn channel_from_arn(arn: &str) -> Option<&str> {
    let arn = parse_arn(arn)?;
    if arn.service != "kinesis" {
        return None;
    }
    arn.resource
        .strip_prefix("channel/")
        .filter(|n| valid_channel_name(n))
}

/// The table bucket an S3 Tables bucket ARN
/// (`arn:aws:s3tables:REGION:ACCOUNT:bucket/NAME`) names: 3–63 of
/// `[a-z0-9_-]`.
pub fn table_bucket_from_arn(arn: &str) -> Option<&str> {
    let arn = parse_arn(arn)?;
    if arn.service != "s3tables" {
        return None;
    }
    arn.resource.strip_prefix("bucket/").filter(|n| {
        (3..=63).contains(&n.len())
            && n.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
    })
}

/// The ARN of a stream's registered consumer: Kinesis appends the consumer's
/// name and its creation time in epoch seconds to the stream's ARN.
pub fn consumer_arn(stream: &str, consumer: &str, created_secs: i64) -> String {
    format!(
        "{}/consumer/{consumer}:{created_secs}",
        kinesis_stream_arn(stream)
    )
}

/// The IAM role ARN Hydrant reports where Firehose reports the role it
/// assumed and the request named none.
pub fn default_role_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/hydrant")
}

/// The parts of an ARN: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
struct Arn<'a> {
    service: &'a str,
    resource: &'a str,
}

fn parse_arn(arn: &str) -> Option<Arn<'_>> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (_partition, service) = (parts.next()?, parts.next()?);
    let (_region, _account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Arn { service, resource })
}

/// The resource of a KMS ARN (`arn:aws:kms:REGION:ACCOUNT:RESOURCE`):
/// `key/ID` or `alias/NAME`.
pub fn kms_resource(arn: &str) -> Option<&str> {
    parse_arn(arn)
        .filter(|a| a.service == "kms")
        .map(|a| a.resource)
}

/// The stream name in a Kinesis stream ARN
/// (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
pub fn kinesis_stream_from_arn(arn: &str) -> Option<&str> {
    let arn = parse_arn(arn)?;
    if arn.service != "kinesis" {
        return None;
    }
    arn.resource
        .strip_prefix("stream/")
        .filter(|n| valid_kinesis_stream_name(n))
}

/// The delivery stream a Firehose ARN names
/// (`arn:aws:firehose:REGION:ACCOUNT:deliverystream/NAME`).
pub fn delivery_stream_from_arn(arn: &str) -> Option<&str> {
    let arn = parse_arn(arn)?;
    if arn.service != "firehose" {
        return None;
    }
    arn.resource
        .strip_prefix("deliverystream/")
        .filter(|n| valid_delivery_stream_name(n))
}

/// The ARN of a SQL application (Kinesis Data Analytics).
pub fn analytics_application_arn(name: &str) -> String {
    format!("arn:aws:kinesisanalytics:{REGION}:{ACCOUNT}:application/{name}")
}

/// The (stream, consumer, creation seconds) a consumer ARN names
/// (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/CONSUMER:SECS`).
pub fn consumer_from_arn(arn: &str) -> Option<(&str, &str, i64)> {
    let arn = parse_arn(arn)?;
    if arn.service != "kinesis" {
        return None;
    }
    let rest = arn.resource.strip_prefix("stream/")?;
    let (stream, rest) = rest.split_once("/consumer/")?;
    let (consumer, secs) = rest.rsplit_once(':')?;
    if !valid_kinesis_stream_name(stream) || !valid_consumer_name(consumer) {
        return None;
    }
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stream, consumer, secs.parse().ok()?))
}

/// The bucket an S3 bucket ARN (`arn:aws:s3:::BUCKET`) names, if the name
/// is a valid bucket name.
pub fn bucket_from_arn(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:aws:s3:::")
        .filter(|b| valid_bucket_name(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_and_table_bucket_arns_are_read() {
        assert_eq!(
            channel_from_arn(&channel_arn("logs.to-lake")),
            Some("logs.to-lake")
        );
        assert_eq!(
            channel_from_arn("arn:aws:kinesis:us-east-1:000000000000:stream/x"),
            None
        );
        assert_eq!(
            channel_from_arn("arn:aws:kinesis:us-east-1:000000000000:channel/a b"),
            None
        );
        assert_eq!(
            table_bucket_from_arn("arn:aws:s3tables:us-east-1:000000000000:bucket/lake_1"),
            Some("lake_1")
        );
        assert_eq!(
            table_bucket_from_arn("arn:aws:s3tables:us-east-1:0:bucket/UP"),
            None
        );
        assert_eq!(table_bucket_from_arn("arn:aws:s3:::lake"), None);
    }

    #[test]
    fn stream_arns_round_trip() {
        let arn = kinesis_stream_arn("orders.v2");
        assert_eq!(
            arn,
            "arn:aws:kinesis:us-east-1:000000000000:stream/orders.v2"
        );
        assert_eq!(kinesis_stream_from_arn(&arn), Some("orders.v2"));
        assert_eq!(
            kinesis_stream_from_arn("arn:aws:firehose:us-east-1:000000000000:stream/x"),
            None
        );
        assert_eq!(
            kinesis_stream_from_arn("arn:aws:kinesis:us-east-1:000000000000:stream/bad name"),
            None
        );
        assert_eq!(
            delivery_stream_arn("logs"),
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/logs"
        );
    }

    #[test]
    fn consumer_arns_round_trip() {
        let arn = consumer_arn("s", "app-1", 1_700_000_000);
        assert_eq!(
            arn,
            "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/app-1:1700000000"
        );
        assert_eq!(consumer_from_arn(&arn), Some(("s", "app-1", 1_700_000_000)));
        // A stream ARN is not a consumer ARN, nor is one without its time.
        assert_eq!(consumer_from_arn(&kinesis_stream_arn("s")), None);
        assert_eq!(
            consumer_from_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/app"),
            None
        );
        assert_eq!(
            consumer_from_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/app:x1"),
            None
        );
    }

    #[test]
    fn names_follow_each_services_rules() {
        assert!(valid_delivery_stream_name(&"a".repeat(64)));
        assert!(!valid_delivery_stream_name(&"a".repeat(65)));
        assert!(valid_kinesis_stream_name(&"a".repeat(128)));
        assert!(!valid_kinesis_stream_name(""));
        assert!(!valid_kinesis_stream_name("a/b"));
        assert!(valid_bucket_name("my-bucket.1"));
        assert!(!valid_bucket_name("-bucket"));
        assert!(!valid_bucket_name("Bucket"));
        assert_eq!(bucket_from_arn("arn:aws:s3:::logs"), Some("logs"));
        assert_eq!(bucket_from_arn("arn:aws:s3:::x"), None);
    }
}
