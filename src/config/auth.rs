//! `auth`: the access keys SigV4 signatures are checked against, each with
//! its permissions (a policy; none: every operation on every resource).
//! Without keys Hydrant listens only on loopback.

use std::net::SocketAddr;

use super::raw::RawAuth;
use super::{ConfigError, err};

/// One access key pair a producer may sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// What the key may do; None: everything.
    pub policy: Option<super::policy::Policy>,
}

/// Validates `auth`; no keys is allowed only on a loopback `listen` address.
pub(super) fn access_keys(
    errors: &mut Vec<ConfigError>,
    auth: Option<RawAuth>,
    listen: SocketAddr,
) -> Vec<AccessKey> {
    let mut access_keys = Vec::new();
    if let Some(auth) = auth {
        if auth.access_keys.is_empty() {
            errors.push(err("auth.access_keys", "must list at least one key (omit `auth` to run without authentication on loopback)"));
        }
        for (i, k) in auth.access_keys.into_iter().enumerate() {
            if k.access_key_id.is_empty() {
                errors.push(err(
                    format!("auth.access_keys[{i}].access_key_id"),
                    "must not be empty",
                ));
            }
            if k.secret_access_key.is_empty() {
                errors.push(err(
                    format!("auth.access_keys[{i}].secret_access_key"),
                    "must not be empty",
                ));
            }
            let policy = match &k.policy {
                None => None,
                Some(doc) => match super::policy::parse(doc) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        // `Statement[0].Effect: reason`, or a reason alone.
                        let (part, why) = match e.split_once(": ") {
                            Some((p, w)) if !p.contains(' ') => (format!(".{p}"), w.to_string()),
                            _ => (String::new(), e.clone()),
                        };
                        errors.push(err(format!("auth.access_keys[{i}].policy{part}"), why));
                        None
                    }
                },
            };
            access_keys.push(AccessKey {
                access_key_id: k.access_key_id,
                secret_access_key: k.secret_access_key,
                policy,
            });
        }
    }
    if access_keys.is_empty() && !listen.ip().is_loopback() {
        errors.push(err(
            "auth",
            format!("is required when listening on a non-loopback address ({listen})"),
        ));
    }
    access_keys
}
