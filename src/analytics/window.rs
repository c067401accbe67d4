//! Window assignment and watermarks: which windows a moment falls in, when
//! a row is late, and when a window may close.
//!
//! Lateness is decided per shard and per row, so it does not depend on how
//! the reads of different shards interleave: a row is late when its event
//! time is below its own shard's watermark (the largest event time that
//! shard has shown, less the allowed out-of-orderness). A window closes
//! when the smallest watermark over the shards still being read passes its
//! end; a shard at the end of its log for the idle time stops holding the
//! others back, and a row that finds its window already closed is late too.
//! Nothing here reads a clock: callers pass the time in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which time a window is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeColumn {
    /// The record's arrival in the log (processing time), made monotonic
    /// per shard.
    Rowtime,
    /// A TIMESTAMP column of the input (event time).
    Column(String),
}

/// Tumbling (`slide_ms == size_ms`) or hopping windows aligned to the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub time: TimeColumn,
    pub size_ms: i64,
    pub slide_ms: i64,
}

impl WindowSpec {
    /// The starts of the windows `[start, start + size)` holding `t`,
    /// ascending.
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> + use<> {
        let (size, slide) = (self.size_ms.max(1), self.slide_ms.max(1));
        let last = t.div_euclid(slide) * slide;
        let first = (t - size).div_euclid(slide) * slide + slide;
        (0..)
            .map(move |i: i64| first + i * slide)
            .take_while(move |s| *s <= last)
    }

    /// The earliest window holding `t`.
    pub fn first_start(&self, t: i64) -> i64 {
        let (size, slide) = (self.size_ms.max(1), self.slide_ms.max(1));
        (t - size).div_euclid(slide) * slide + slide
    }
}

/// One shard's clock, as checkpointed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardClock {
    /// The largest event time seen (or ROWTIME handed out).
    pub max_ms: Option<i64>,
    /// Read to its end and closed (a resharded parent): holds nothing back.
    pub done: bool,
    /// At the end of its log for the idle time (not checkpointed).
    #[serde(skip)]
    pub idle: bool,
}

/// The watermarks of one application's input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    pub shards: BTreeMap<u32, ShardClock>,
    /// The out-of-orderness allowed within a shard.
    pub delay_ms: i64,
    /// The largest watermark windows were closed at: only grows.
    pub closed_ms: Option<i64>,
}

/// Why a row was not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Late {
    /// Below its shard's watermark.
    BehindShard { watermark_ms: i64 },
    /// Its window closed already (its shard had been idle).
    WindowClosed { closed_ms: i64 },
}

impl Watermarks {
    pub fn new(delay_ms: i64) -> Watermarks {
        Watermarks {
            delay_ms,
            ..Watermarks::default()
        }
    }

    /// The watermark of `shard`, if it has shown a time yet.
    pub fn shard_watermark(&self, shard: u32) -> Option<i64> {
        self.shards
            .get(&shard)
            .and_then(|c| c.max_ms)
            .map(|m| m.saturating_sub(self.delay_ms))
    }

    /// Notes a row's event time `t` from `shard` (whose earliest window
    /// starts at `first_start` and ends at `first_end`), unless it is late.
    pub fn observe(&mut self, shard: u32, t: i64, first_end: i64) -> Result<(), Late> {
        if let Some(w) = self.shard_watermark(shard)
            && t < w
        {
            return Err(Late::BehindShard { watermark_ms: w });
        }
        if let Some(c) = self.closed_ms
            && first_end <= c
        {
            return Err(Late::WindowClosed { closed_ms: c });
        }
        let clock = self.shards.entry(shard).or_default();
        clock.idle = false;
        clock.max_ms = Some(clock.max_ms.map_or(t, |m| m.max(t)));
        Ok(())
    }

    /// The ROWTIME of a record of `shard` that arrived at `arrival_ms`:
    /// never below an earlier one of the shard.
    pub fn rowtime(&mut self, shard: u32, arrival_ms: i64) -> i64 {
        let clock = self.shards.entry(shard).or_default();
        clock.idle = false;
        let t = clock.max_ms.map_or(arrival_ms, |m| m.max(arrival_ms));
        clock.max_ms = Some(t);
        t
    }

    /// A shard read to the end of its log: with processing time its clock
    /// moves to `now_ms` (what it writes next arrives later); with event
    /// time it stops holding the others back.
    pub fn caught_up(&mut self, shard: u32, now_ms: i64, processing_time: bool) {
        let clock = self.shards.entry(shard).or_default();
        if processing_time {
            clock.max_ms = Some(clock.max_ms.map_or(now_ms, |m| m.max(now_ms)));
        } else {
            clock.idle = true;
        }
    }

    /// A closed shard read to its end: it holds nothing back any more.
    pub fn finished(&mut self, shard: u32) {
        self.shards.entry(shard).or_default().done = true;
    }

    /// Makes sure `shard` is known (it holds others back until it shows a
    /// time, goes idle or finishes).
    pub fn track(&mut self, shard: u32) {
        self.shards.entry(shard).or_default();
    }

    /// The watermark windows may close at now: the smallest over the shards
    /// being read (not done, not idle), or the largest of all when every
    /// shard is done or idle. None while a shard being read has shown no
    /// time yet.
    pub fn global(&self) -> Option<i64> {
        let mut active = None::<i64>;
        let mut any = None::<i64>;
        for (shard, c) in &self.shards {
            let w = self.shard_watermark(*shard);
            if let Some(w) = w {
                any = Some(any.map_or(w, |a| a.max(w)));
            }
            if c.done || c.idle {
                continue;
            }
            let w = w?;
            active = Some(active.map_or(w, |a| a.min(w)));
        }
        active
            .or(any)
            .map(|w| self.closed_ms.map_or(w, |c| c.max(w)))
    }

    /// Records that windows ending at or before `w` were closed.
    pub fn close_at(&mut self, w: i64) {
        self.closed_ms = Some(self.closed_ms.map_or(w, |c| c.max(w)));
    }
}

#[cfg(test)]
mod tests;
