//! Tests of the remuxer: codec handling, timing and box layout checked
//! directly, and whole streams played back with ffmpeg and compared frame
//! by frame with their source.

mod boxes;
mod ffmpeg;
mod hls_text;
mod mkv;
mod playback;
mod unit;
