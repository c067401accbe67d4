//! Writes wasmtime's WASI preview1 reactor adapter to the path given.

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: write-wasi-adapter OUT.wasm");
        std::process::exit(2);
    };
    std::fs::write(
        out,
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )
}
