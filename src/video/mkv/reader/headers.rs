//! The reader's handling of what is not a Cluster: the EBML header, Info
//! and Tracks (which make the stream header) and Tags between clusters.

use super::super::ebml::{Head, id};
use super::super::header;
use super::super::tags;
use super::super::{ReadEvent, StreamHeader, Violation};
use super::{MkvReader, Phase, Step};

impl MkvReader {
    /// The EBML header, which must open the body: kept as sent for the
    /// stream header once it names a Matroska document.
    pub(super) fn on_ebml_header(&mut self, head: Head) -> Result<Step, Violation> {
        if head.id != id::EBML {
            return Err(Violation::invalid(
                "the body does not start with an EBML header",
            ));
        }
        let total = self.header_budget(&head)?;
        let Some(n) = self.whole(total) else {
            return Ok(Step::Wait);
        };
        let element = self.buf[..n].to_vec();
        self.consume(n);
        header::check_ebml_header(&element[head.len..])?;
        self.parts.bytes += total;
        self.parts.ebml = Some(element);
        self.phase = Phase::Segment;
        Ok(Step::Continue)
    }

    /// Info or Tracks. A repeat identical to the first is ignored (a cluster
    /// of unknown size may be followed by one); a different one is fatal,
    /// since the stored fragments all share one header.
    pub(super) fn on_header_element(&mut self, head: Head) -> Result<Step, Violation> {
        self.check_fits(&head)?;
        let repeat = match head.id {
            id::INFO => self.parts.info.is_some(),
            _ => self.parts.tracks.is_some(),
        };
        let total = if repeat {
            head.total()
                .filter(|&t| t <= self.limits.header_bytes_max as u64)
                .ok_or_else(|| Violation::invalid("a repeated Info or Tracks is too large"))?
        } else {
            self.header_budget(&head)?
        };
        let Some(n) = self.whole(total) else {
            return Ok(Step::Wait);
        };
        let element = self.buf[..n].to_vec();
        self.consume(n);
        let payload = &element[head.len..];
        let changed = if head.id == id::INFO {
            let info = header::parse_info(payload)?;
            let changed = self.parts.info.as_ref().is_some_and(|old| *old != info);
            self.parts.info.get_or_insert(info);
            changed
        } else {
            let tracks = header::parse_tracks(payload, self.limits.tracks_max)?;
            let changed = self
                .parts
                .tracks
                .as_ref()
                .is_some_and(|(_, old)| *old != element);
            self.parts.tracks.get_or_insert((tracks, element));
            changed
        };
        if changed {
            return Err(Violation::invalid(
                "Info or Tracks changes within the Segment",
            ));
        }
        if !repeat {
            self.parts.bytes += total;
        }
        if self.header.is_none() && self.parts.info.is_some() && self.parts.tracks.is_some() {
            self.ensure_header()?;
        }
        Ok(Step::Continue)
    }

    /// Tags between clusters: metadata for the next fragment, or the end of
    /// the current one.
    pub(super) fn on_tags(&mut self, head: Head) -> Result<Step, Violation> {
        self.check_fits(&head)?;
        let Some(total) = head.total() else {
            return Err(Violation::invalid("Tags of unknown size"));
        };
        let max = self.limits.header_bytes_max;
        if total > max as u64 {
            self.tags
                .refuse(format!("a Tags element larger than {max} bytes"));
            return self.skip_element(head);
        }
        let Some(n) = self.whole(total) else {
            return Ok(Step::Wait);
        };
        let pairs = tags::parse(&self.buf[head.len..n]);
        self.consume(n);
        if self.tags.absorb(pairs?, self.limits.tags_per_fragment_max) {
            self.flush_pending(None);
        }
        Ok(Step::Continue)
    }

    /// Emits the header if it is not out yet. A Cluster before Tracks is
    /// fatal: its blocks could not be checked against any track.
    pub(super) fn ensure_header(&mut self) -> Result<(), Violation> {
        if self.header.is_some() {
            return Ok(());
        }
        let (Some(ebml), Some((tracks, tracks_element))) = (&self.parts.ebml, &self.parts.tracks)
        else {
            return Err(Violation::invalid(
                "the body holds no Tracks before its first Cluster",
            ));
        };
        let info = self.parts.info.get_or_insert_with(header::default_info);
        let header = StreamHeader {
            tracks: tracks.clone(),
            timecode_scale_ns: info.timecode_scale_ns,
            bytes: header::header_bytes(ebml, &info.element, tracks_element),
        };
        self.events.push(ReadEvent::Header(header.clone()));
        self.header = Some(header);
        Ok(())
    }

    /// The size of a header element, checked against what the header may
    /// still take.
    pub(super) fn header_budget(&self, head: &Head) -> Result<u64, Violation> {
        let max = self.limits.header_bytes_max as u64;
        match head.total() {
            None => Err(Violation::invalid(format!(
                "header element {:#X} has an unknown size",
                head.id
            ))),
            Some(total) if self.parts.bytes.saturating_add(total) > max => Err(Violation::invalid(
                format!("the stream header is larger than {max} bytes"),
            )),
            Some(total) => Ok(total),
        }
    }
}
