//! [`MkvReader`], the push parser over a `PutMedia` body.
//!
//! The reader keeps the bytes it was given but could not use yet (at most
//! one element being read), the stream header, the fragment being read and
//! the one fragment waiting for the next cluster's start. Elements it needs
//! whole (the EBML header, Info, Tracks, Tags, a block) are read once they
//! are complete; elements it does not need are skipped by their size as the
//! bytes pass, however large. Each decision depends only on bytes already
//! seen, so the events do not depend on how the body was cut into chunks.
//!
//! Memory is bounded by the limits: the stream header and a Tags element
//! (each at most `header_bytes_max`), the fragment being read (at most
//! `fragment_bytes_max`, checked before an element is buffered), and the
//! bytes of the last push not yet used. A complete fragment waits for the
//! next cluster's Timecode only, which is that cluster's first child, so two
//! large fragments are never held at once.
//!
//! A Cluster of unknown size ends at the first element it cannot hold: the
//! next Cluster, a level-1 element such as Tags, or anything else, which
//! then counts at Segment level, where bytes that are no level-1 element
//! are garbage.

use bytes::{Buf, BytesMut};

use super::super::types::TrackInfo;
use super::ebml::{self, Head, id};
use super::fragment::{Context, OpenCluster, ticks_to_ns};
use super::header::{self, Info};
use super::tags::PendingTags;
use super::{Fragment, KvsError, ReadEvent, ReaderLimits, StreamHeader, Violation};

mod headers;

/// Where in the body the reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Expecting the EBML header.
    Ebml,
    /// Expecting the Segment.
    Segment,
    /// Inside the Segment.
    Body,
    /// Past the end of a Segment of known size.
    AfterSegment,
    /// Finished, or stopped by a fatal error: the rest is ignored.
    Done,
}

/// Whether the reader can go on with the bytes it holds.
enum Step {
    Continue,
    Wait,
}

/// The parts of the stream header, as they arrive.
#[derive(Debug, Default)]
struct HeaderParts {
    ebml: Option<Vec<u8>>,
    info: Option<Info>,
    /// The tracks and the Tracks element as sent.
    tracks: Option<(Vec<TrackInfo>, Vec<u8>)>,
    /// Bytes the header's elements take, against `header_bytes_max`.
    bytes: u64,
}

/// A push parser over a `PutMedia` body: see the module documentation.
#[derive(Debug)]
pub struct MkvReader {
    limits: ReaderLimits,
    buf: BytesMut,
    /// Where `buf` starts within the body.
    pos: u64,
    phase: Phase,
    /// Bytes to discard before the next element (one being skipped).
    skip: u64,
    /// Where the Segment ends, when its size is known.
    segment_end: Option<u64>,
    parts: HeaderParts,
    header: Option<StreamHeader>,
    cluster: Option<OpenCluster>,
    /// A complete fragment waiting for the next cluster's start, which
    /// gives its duration.
    pending: Option<Fragment>,
    tags: PendingTags,
    /// The Timecode of the last cluster that was not refused for going back.
    last_timecode: Option<i64>,
    events: Vec<ReadEvent>,
}

impl MkvReader {
    /// A reader at the start of a body.
    pub fn new(limits: ReaderLimits) -> MkvReader {
        MkvReader {
            limits,
            buf: BytesMut::new(),
            pos: 0,
            phase: Phase::Ebml,
            skip: 0,
            segment_end: None,
            parts: HeaderParts::default(),
            header: None,
            cluster: None,
            pending: None,
            tags: PendingTags::default(),
            last_timecode: None,
            events: Vec::new(),
        }
    }

    /// Takes the next bytes of the body and returns what they completed.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<ReadEvent> {
        if self.phase != Phase::Done {
            // Bytes being skipped need not pass through the buffer.
            if self.skip > 0 && self.buf.is_empty() {
                let n = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
                data = &data[n..];
                self.skip -= n as u64;
                self.pos += n as u64;
            }
            self.buf.extend_from_slice(data);
            self.run();
        }
        std::mem::take(&mut self.events)
    }

    /// Ends the body: closes the last fragment and reports what the body
    /// left unfinished. Later pushes are ignored.
    pub fn finish(&mut self) -> Vec<ReadEvent> {
        match self.phase {
            Phase::Done => {}
            Phase::Ebml if self.pos == 0 && self.buf.is_empty() => {}
            Phase::Ebml | Phase::Segment => {
                self.fail(Violation::invalid("the body ends before its Segment"));
            }
            Phase::Body | Phase::AfterSegment => self.finish_segment(),
        }
        self.phase = Phase::Done;
        self.buf = BytesMut::new();
        std::mem::take(&mut self.events)
    }

    /// The bytes the reader holds: unread input and the fragments in hand.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
            + self.cluster.as_ref().map_or(0, OpenCluster::bytes)
            + self.pending.as_ref().map_or(0, |f| f.cluster.len())
    }

    /// The stream's header, once read.
    pub fn header(&self) -> Option<&StreamHeader> {
        self.header.as_ref()
    }

    /// Ends the Segment at the end of the body.
    fn finish_segment(&mut self) {
        let truncated = !self.buf.is_empty()
            || self.skip > 0
            || self
                .cluster
                .as_ref()
                .and_then(|c| c.end)
                .is_some_and(|end| end > self.pos);
        if truncated && let Some(c) = self.cluster.take().filter(|c| !c.rejected) {
            self.flush_pending(None);
            self.events.push(ReadEvent::Error {
                error: KvsError::InvalidMkvData,
                timecode: c.timecode,
                message: "the body ends inside the fragment".to_string(),
                fatal: false,
            });
        }
        self.close_cluster();
        self.flush_pending(None);
        if self.header.is_none()
            && let Err(v) = self.ensure_header()
        {
            self.fail(v);
        }
    }

    /// Reads as far as the buffered bytes allow.
    fn run(&mut self) {
        while self.phase != Phase::Done {
            if self.skip > 0 {
                let n =
                    usize::try_from(self.skip).map_or(self.buf.len(), |s| s.min(self.buf.len()));
                self.consume(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return;
                }
                continue;
            }
            if self.close_ended() {
                continue;
            }
            let step = match ebml::read_head(&self.buf) {
                Ok(Some(head)) => self.dispatch(head),
                Ok(None) => return,
                Err(m) => Err(m.into()),
            };
            match step {
                Ok(Step::Continue) => {}
                Ok(Step::Wait) => return,
                Err(v) => self.fail(v),
            }
        }
        self.buf = BytesMut::new();
    }

    /// Closes a Cluster or Segment of known size that ends here.
    fn close_ended(&mut self) -> bool {
        if self
            .cluster
            .as_ref()
            .is_some_and(|c| c.end == Some(self.pos))
        {
            self.close_cluster();
            return true;
        }
        if self.phase == Phase::Body && self.segment_end == Some(self.pos) {
            self.close_cluster();
            self.phase = Phase::AfterSegment;
            return true;
        }
        false
    }

    /// Handles the element whose header is at the front of the buffer.
    fn dispatch(&mut self, head: Head) -> Result<Step, Violation> {
        match self.phase {
            Phase::Ebml => self.on_ebml_header(head),
            Phase::Segment => match head.id {
                id::SEGMENT => {
                    self.consume(head.len);
                    self.segment_end = head.size.map(|size| self.pos.saturating_add(size));
                    self.phase = Phase::Body;
                    Ok(Step::Continue)
                }
                id::VOID | id::CRC32 => self.skip_element(head),
                _ => Err(Violation::invalid(
                    "the EBML header is not followed by a Segment",
                )),
            },
            Phase::Body if self.cluster.is_some() => self.in_cluster(head),
            Phase::Body => self.in_segment(head),
            Phase::AfterSegment => match head.id {
                id::VOID | id::CRC32 => self.skip_element(head),
                id::EBML | id::SEGMENT => Err(Violation::invalid("a second Segment in the body")),
                _ => Err(Violation::invalid("bytes after the end of the Segment")),
            },
            Phase::Done => Ok(Step::Wait),
        }
    }

    /// An element at Segment level, outside any Cluster.
    fn in_segment(&mut self, head: Head) -> Result<Step, Violation> {
        match head.id {
            id::CLUSTER => self.open_cluster(head),
            id::INFO | id::TRACKS => self.on_header_element(head),
            id::TAGS => self.on_tags(head),
            id::EBML | id::SEGMENT => Err(Violation::invalid("a second Segment in the body")),
            id::VOID | id::CRC32 => self.skip_element(head),
            // Level-1 IDs are the 4-byte ones: an unknown one is a newer
            // Matroska element, skipped by its size.
            0x1000_0000..=0x1FFF_FFFF => self.skip_element(head),
            other => Err(Violation::invalid(format!(
                "bytes that are no Segment element (ID {other:#X}) at offset {}",
                self.pos
            ))),
        }
    }

    /// An element inside a Cluster, or the element that ends one.
    fn in_cluster(&mut self, head: Head) -> Result<Step, Violation> {
        let known_size = self.cluster.as_ref().is_some_and(|c| c.end.is_some());
        match head.id {
            id::TIMECODE | id::SIMPLE_BLOCK | id::BLOCK_GROUP => self.on_cluster_child(head),
            id::VOID
            | id::CRC32
            | id::POSITION
            | id::PREV_SIZE
            | id::SILENT_TRACKS
            | id::ENCRYPTED_BLOCK => self.skip_element(head),
            _ if known_size => self.skip_element(head),
            _ => {
                self.close_cluster();
                Ok(Step::Continue)
            }
        }
    }

    /// A Cluster starts a fragment, which takes the producer tags read
    /// since the last one.
    fn open_cluster(&mut self, head: Head) -> Result<Step, Violation> {
        self.ensure_header()?;
        self.check_fits(&head)?;
        let end = head.size.map(|size| {
            self.pos
                .saturating_add(head.len as u64)
                .saturating_add(size)
        });
        let tags = self.tags.take();
        self.consume(head.len);
        self.cluster = Some(OpenCluster::new(end, tags));
        Ok(Step::Continue)
    }

    /// A Timecode, SimpleBlock or BlockGroup: kept unless the fragment was
    /// dropped or would grow past its limit.
    fn on_cluster_child(&mut self, head: Head) -> Result<Step, Violation> {
        let Some(total) = head.total() else {
            return Err(Violation::invalid("a Cluster child of unknown size"));
        };
        self.check_fits(&head)?;
        let Some(cluster) = self.cluster.as_ref() else {
            return Ok(Step::Continue);
        };
        if cluster.rejected {
            return self.skip_element(head);
        }
        if head.id == id::TIMECODE && head.size.is_some_and(|size| size > 8) {
            return Err(Violation::invalid("a Timecode longer than 8 bytes"));
        }
        let max = self.limits.fragment_bytes_max;
        if (cluster.bytes() as u64).saturating_add(total) > max as u64 {
            self.reject(Violation::new(
                KvsError::MaxFragmentSizeReached,
                format!("the fragment is larger than {max} bytes"),
            ));
            return self.skip_element(head);
        }
        let Some(n) = self.whole(total) else {
            return Ok(Step::Wait);
        };
        if head.id == id::TIMECODE {
            let element = self.buf[..n].to_vec();
            self.consume(n);
            self.on_timecode(&element, head.len)?;
        } else {
            self.on_block(head, n);
        }
        Ok(Step::Continue)
    }

    /// The Cluster's Timecode: the previous fragment now has its duration,
    /// and this one is checked against it.
    fn on_timecode(&mut self, element: &[u8], head_len: usize) -> Result<(), Violation> {
        let value = ebml::uint(&element[head_len..])?;
        let scale = self.timecode_scale_ns();
        let Some(cluster) = self.cluster.as_ref() else {
            return Ok(());
        };
        if cluster.timecode.is_some() {
            self.reject(Violation::invalid("a second Timecode in one Cluster"));
            return Ok(());
        }
        let Ok(timecode) = i64::try_from(value) else {
            self.reject(Violation::invalid("a Timecode beyond the 64-bit range"));
            return Ok(());
        };
        self.flush_pending(Some(ticks_to_ns(i128::from(timecode), scale)));
        let Some(cluster) = self.cluster.as_mut() else {
            return Ok(());
        };
        cluster.set_timecode(element, timecode, scale);
        let refused_tags = cluster.tags.as_ref().err().cloned();
        if let Some(last) = self.last_timecode.filter(|&last| timecode < last) {
            self.reject(Violation::new(
                KvsError::FragmentTimecodeLesserThanPrevious,
                format!("timecode {timecode} is before the previous fragment's {last}"),
            ));
            return Ok(());
        }
        self.last_timecode = Some(timecode);
        if let Some(v) = refused_tags {
            self.reject(v);
            return Ok(());
        }
        self.events.push(ReadEvent::FragmentStarted { timecode });
        Ok(())
    }

    /// A SimpleBlock or BlockGroup of `n` bytes at the front of the buffer.
    fn on_block(&mut self, head: Head, n: usize) {
        let result = match (self.header.as_ref(), self.cluster.as_mut()) {
            (Some(header), Some(cluster)) => {
                let ctx = Context {
                    tracks: &header.tracks,
                    timecode_scale_ns: header.timecode_scale_ns,
                    duration_max_ns: i64::try_from(self.limits.fragment_duration_max.as_nanos())
                        .unwrap_or(i64::MAX),
                    frames_max: self.limits.frames_per_fragment_max,
                };
                cluster.add_block(&ctx, &self.buf[..n], head.len, head.id == id::BLOCK_GROUP)
            }
            _ => Ok(()),
        };
        self.consume(n);
        if let Err(v) = result {
            self.reject(v);
        }
    }

    /// Completes the open Cluster: it becomes the pending fragment, or an
    /// error if it misses a track or its Timecode.
    fn close_cluster(&mut self) {
        let Some(cluster) = self.cluster.take() else {
            return;
        };
        if cluster.rejected {
            return;
        }
        let timecode = cluster.timecode;
        let tracks = self.header.as_ref().map_or(&[][..], |h| &h.tracks[..]);
        let result = cluster.finish(tracks);
        self.flush_pending(None);
        match result {
            Ok(fragment) => self.pending = Some(fragment),
            Err(v) => self.events.push(ReadEvent::Error {
                error: v.error,
                timecode,
                message: v.message,
                fatal: false,
            }),
        }
    }

    /// Emits the pending fragment. Its duration runs to the next cluster's
    /// start when that is known and within the limit; a longer gap is a
    /// pause in the stream, not part of the fragment.
    fn flush_pending(&mut self, next_start_ns: Option<i64>) {
        let Some(mut fragment) = self.pending.take() else {
            return;
        };
        if let Some(next) = next_start_ns {
            let gap = i128::from(next) - i128::from(fragment.start_ns);
            if gap > 0 && gap <= self.limits.fragment_duration_max.as_nanos() as i128 {
                fragment.duration_ns = gap as u64;
            }
        }
        self.events.push(ReadEvent::Fragment(fragment));
    }

    /// Drops the open fragment with a violation; reading goes on.
    fn reject(&mut self, v: Violation) {
        self.flush_pending(None);
        if let Some(cluster) = self.cluster.as_mut() {
            let timecode = cluster.timecode;
            cluster.reject();
            self.events.push(ReadEvent::Error {
                error: v.error,
                timecode,
                message: v.message,
                fatal: false,
            });
        }
    }

    /// Stops reading: the rest of the body is ignored. A complete fragment
    /// still waiting for its duration is emitted first, as nothing is wrong
    /// with it.
    fn fail(&mut self, v: Violation) {
        self.flush_pending(None);
        let timecode = self.cluster.take().and_then(|c| c.timecode);
        self.events.push(ReadEvent::Error {
            error: v.error,
            timecode,
            message: v.message,
            fatal: true,
        });
        self.phase = Phase::Done;
        self.skip = 0;
        self.buf = BytesMut::new();
    }

    /// Skips an element of known size by its size.
    fn skip_element(&mut self, head: Head) -> Result<Step, Violation> {
        let Some(size) = head.size else {
            return Err(Violation::invalid(format!(
                "element {:#X} has an unknown size; only a Segment or Cluster may",
                head.id
            )));
        };
        self.check_fits(&head)?;
        self.consume(head.len);
        self.skip = size;
        Ok(Step::Continue)
    }

    /// An element must end within the Cluster or Segment holding it.
    fn check_fits(&self, head: &Head) -> Result<(), Violation> {
        let Some(total) = head.total() else {
            return Ok(());
        };
        let end = self.pos.saturating_add(total);
        let parent_end = self
            .cluster
            .as_ref()
            .and_then(|c| c.end)
            .or(self.segment_end);
        if parent_end.is_some_and(|parent| end > parent) {
            return Err(Violation::invalid(format!(
                "element {:#X} runs past its parent",
                head.id
            )));
        }
        Ok(())
    }

    /// The element's length if it is wholly buffered.
    fn whole(&self, total: u64) -> Option<usize> {
        usize::try_from(total).ok().filter(|&n| n <= self.buf.len())
    }

    /// Drops `n` bytes from the front of the buffer.
    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.pos += n as u64;
    }

    /// Nanoseconds per tick, once the header is known.
    fn timecode_scale_ns(&self) -> u64 {
        self.header
            .as_ref()
            .map_or(header::TIMECODE_SCALE_DEFAULT, |h| h.timecode_scale_ns)
    }
}
