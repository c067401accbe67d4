//! Builds the WebAssembly guests the tests run (the Rust example transform
//! and the misbehaving test transform) with plain cargo, once per process.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the component of the cargo project at `dir` (relative to the
/// repository) and returns the .wasm path.
pub fn build(dir: &str, artifact: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target").join("guests");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(root.join(dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the guest in {dir} failed");
    let wasm = target
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{artifact}.wasm"));
    assert!(wasm.exists(), "{} was not built", wasm.display());
    wasm
}

pub fn example() -> PathBuf {
    build("transforms/examples/rust", "hydrant_transform_example")
}

pub fn misbehave() -> PathBuf {
    build("tests/guests/misbehave", "misbehave")
}

pub fn wrong_world() -> PathBuf {
    build("tests/guests/wrongworld", "wrongworld")
}
