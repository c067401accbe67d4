//! Tags between clusters: the producer's fragment metadata, which belongs
//! to the fragment that follows, and the end-of-fragment marker, which
//! closes the current fragment at once.
//!
//! Kinesis Video's metadata limits apply here: at most
//! `tags_per_fragment_max` tags a fragment, names of at most 128 bytes,
//! values of at most 256 bytes, and no names starting with "AWS" but the
//! service's own. Names starting with [`SERVICE_TAG_PREFIX`] are the
//! service's: the end-of-fragment marker is acted on, the others (as a
//! re-uploaded `GetMedia` chunk would carry) are dropped, since the service
//! writes its own when it serves the fragment.

use super::ebml::{self, children, id};
use super::{END_OF_FRAGMENT_TAG, KvsError, SERVICE_TAG_PREFIX, Violation};

/// The longest tag name a producer may send, in bytes.
const NAME_BYTES_MAX: usize = 128;
/// The longest tag value a producer may send, in bytes.
const VALUE_BYTES_MAX: usize = 256;

/// Reads a Tags payload into (name, value) pairs, in order. SimpleTags
/// without a TagString (binary tags) are left out: fragment metadata is
/// text. Targets are ignored: metadata applies to the fragment as a whole.
pub(super) fn parse(payload: &[u8]) -> Result<Vec<(String, String)>, Violation> {
    let mut out = Vec::new();
    for tag in children(payload) {
        let tag = tag?;
        if tag.id != id::TAG {
            continue;
        }
        for simple in children(tag.data) {
            let simple = simple?;
            if simple.id != id::SIMPLE_TAG {
                continue;
            }
            let mut name = None;
            let mut value = None;
            for field in children(simple.data) {
                let field = field?;
                match field.id {
                    id::TAG_NAME => name = Some(ebml::string(field.data)),
                    id::TAG_STRING => value = Some(ebml::string(field.data)),
                    _ => {}
                }
            }
            if let (Some(name), Some(value)) = (name, value) {
                out.push((name, value));
            }
        }
    }
    Ok(out)
}

/// The producer tags waiting for the next fragment.
#[derive(Debug, Default)]
pub(super) struct PendingTags {
    pub tags: Vec<(String, String)>,
    /// The first limit the tags broke, if any: the next fragment is
    /// dropped with it.
    pub violation: Option<Violation>,
}

impl PendingTags {
    /// Takes one Tags element's pairs. Returns whether it held the
    /// end-of-fragment marker.
    pub fn absorb(&mut self, pairs: Vec<(String, String)>, tags_max: usize) -> bool {
        let mut end_of_fragment = false;
        for (name, value) in pairs {
            if name == END_OF_FRAGMENT_TAG {
                end_of_fragment = true;
                continue;
            }
            if name.starts_with(SERVICE_TAG_PREFIX) {
                continue;
            }
            if let Some(reason) = limit_broken(&name, &value) {
                self.refuse(reason);
                continue;
            }
            // Tags past the limit are not kept, so that a producer sending
            // Tags without end holds no more than the limit.
            if self.tags.len() >= tags_max {
                self.refuse(format!(
                    "more than {tags_max} metadata tags for one fragment"
                ));
                continue;
            }
            self.tags.push((name, value));
        }
        end_of_fragment
    }

    /// Records a broken limit; the first one is the one reported.
    pub fn refuse(&mut self, reason: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation::new(
                KvsError::FragmentMetadataLimitReached,
                reason,
            ));
        }
    }

    /// Hands the tags (or the limit they broke) to the fragment starting now.
    pub fn take(&mut self) -> Result<Vec<(String, String)>, Violation> {
        let tags = std::mem::take(&mut self.tags);
        match self.violation.take() {
            Some(v) => Err(v),
            None => Ok(tags),
        }
    }
}

/// Which per-tag limit a producer tag breaks, if any.
fn limit_broken(name: &str, value: &str) -> Option<String> {
    if name.len() > NAME_BYTES_MAX {
        return Some(format!(
            "a metadata tag name is longer than {NAME_BYTES_MAX} bytes"
        ));
    }
    if value.len() > VALUE_BYTES_MAX {
        return Some(format!(
            "metadata tag {name:?} has a value longer than {VALUE_BYTES_MAX} bytes"
        ));
    }
    if name.starts_with("AWS") {
        return Some(format!(
            "metadata tag {name:?} uses the reserved prefix \"AWS\""
        ));
    }
    None
}
