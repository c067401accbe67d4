//! Encryption at rest settings: the keys of `log.keys`, a stream's
//! `log_encryption`, and the names the AWS APIs give keys (KMS key ARNs and
//! aliases), all resolving to one key id of the log's keyring
//! ([`crate::log::seal`]).

use super::encoding::read_keys;
use super::raw::{RawKey, RawLogEncryption};
use super::{ConfigError, err};
use crate::aws;
use crate::log::seal::{BUILTIN_KEY, Keyring};

/// Reads `log.keys`; `builtin` is reserved for the key Hydrant generates.
pub(super) fn keys(errors: &mut Vec<ConfigError>, raw: Option<Vec<RawKey>>) -> Keyring {
    let raw = raw.unwrap_or_default();
    for (i, k) in raw.iter().enumerate() {
        if k.id == BUILTIN_KEY {
            errors.push(err(
                format!("log.keys[{i}].id"),
                format!(
                    "`{BUILTIN_KEY}` names the key Hydrant generates itself; choose another id"
                ),
            ));
        }
    }
    Keyring::new(&read_keys(errors, "log", raw))
}

/// The key a stream seals its log with: the one `requested`, or the first
/// of `log.keys`, or (on a single node) the built-in key. Err says why not.
pub fn resolve(keys: &Keyring, clustered: bool, requested: Option<&str>) -> Result<String, String> {
    let builtin = || {
        if clustered {
            Err(format!(
                "the built-in key `{BUILTIN_KEY}` is one node's own; in cluster mode every node needs the same key: list it in log.keys"
            ))
        } else {
            Ok(BUILTIN_KEY.to_string())
        }
    };
    match requested {
        None => match keys.default_id() {
            Some(id) if id != BUILTIN_KEY => Ok(id.to_string()),
            _ => builtin(),
        },
        Some(BUILTIN_KEY) => builtin(),
        Some(id) if keys.get(id).is_some() => Ok(id.to_string()),
        Some(id) => Err(format!("no key `{id}` is listed in log.keys")),
    }
}

/// Validates a stream's `log_encryption`: the key id it seals with.
pub(super) fn stream_key(
    errors: &mut Vec<ConfigError>,
    path: &str,
    raw: Option<RawLogEncryption>,
    keys: &Keyring,
    clustered: bool,
) -> Option<String> {
    let raw = raw?;
    match resolve(keys, clustered, raw.key.as_deref()) {
        Ok(id) => Some(id),
        Err(m) => {
            errors.push(err(format!("{path}.log_encryption.key"), m));
            None
        }
    }
}

/// The key id a KMS key name of the APIs means: `alias/aws/kinesis` (and
/// `alias/aws/firehose`, `alias/aws/kinesisvideo`) the built-in key; `ID`, `alias/ID`,
/// `arn:aws:kms:REGION:ACCOUNT:key/ID` and `…:alias/ID` the key `ID` of
/// `log.keys`.
pub fn key_id_of_kms(name: &str) -> &str {
    let resource = aws::kms_resource(name).unwrap_or(name);
    if matches!(
        resource,
        "alias/aws/kinesis" | "alias/aws/firehose" | "alias/aws/kinesisvideo"
    ) {
        return BUILTIN_KEY;
    }
    resource
        .strip_prefix("key/")
        .or_else(|| resource.strip_prefix("alias/"))
        .unwrap_or(resource)
}

/// The ARN the APIs report for a configured key.
pub fn kms_key_arn(id: &str) -> String {
    format!("arn:aws:kms:{}:{}:key/{id}", aws::REGION, aws::ACCOUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::encrypt::SecretKey;

    #[test]
    fn kms_names_resolve_to_key_ids() {
        assert_eq!(key_id_of_kms("alias/aws/kinesis"), BUILTIN_KEY);
        assert_eq!(
            key_id_of_kms("arn:aws:kms:us-east-1:000000000000:alias/aws/kinesis"),
            BUILTIN_KEY
        );
        assert_eq!(key_id_of_kms("k1"), "k1");
        assert_eq!(key_id_of_kms("alias/k1"), "k1");
        assert_eq!(key_id_of_kms(&kms_key_arn("k1")), "k1");
        assert_eq!(
            key_id_of_kms("arn:aws:kms:eu-west-1:123456789012:alias/k1"),
            "k1"
        );
    }

    #[test]
    fn a_stream_seals_with_the_first_configured_key_or_the_builtin_one() {
        let none = Keyring::default();
        assert_eq!(resolve(&none, false, None).as_deref(), Ok(BUILTIN_KEY));
        assert!(resolve(&none, true, None).unwrap_err().contains("cluster"));
        let two = Keyring::new(&[
            ("k2".into(), SecretKey([2; 32])),
            ("k1".into(), SecretKey([1; 32])),
        ]);
        assert_eq!(resolve(&two, true, None).as_deref(), Ok("k2"));
        assert_eq!(resolve(&two, false, Some("k1")).as_deref(), Ok("k1"));
        assert_eq!(
            resolve(&two, false, Some(BUILTIN_KEY)).as_deref(),
            Ok(BUILTIN_KEY)
        );
        assert!(resolve(&two, false, Some("k9")).unwrap_err().contains("k9"));
    }
}
