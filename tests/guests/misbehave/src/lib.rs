//! A transform that does what each record asks, to test the host's limits:
//! `trap` panics, `loop` never returns, `oom` allocates without end, `fail`
//! and `drop` return those outcomes, anything else is upper-cased with the
//! partition key `k` set to the record itself. With the config `short`, every
//! batch gets one outcome too few; with `refuse`, init fails.

use std::cell::Cell;

wit_bindgen::generate!({
    path: "../../../transforms/wit",
    world: "transformer",
});

thread_local! {
    static SHORT: Cell<bool> = const { Cell::new(false) };
}

struct Misbehave;

impl Guest for Misbehave {
    fn init(config: String) -> Result<(), String> {
        match config.as_str() {
            "refuse" => Err("refused: this config is not acceptable".into()),
            "short" => {
                SHORT.with(|s| s.set(true));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        let mut out: Vec<Outcome> = batch.into_iter().map(one).collect();
        if SHORT.with(Cell::get) {
            out.pop();
        }
        out
    }
}

fn one(r: Record) -> Outcome {
    let text = String::from_utf8_lossy(&r.data).trim().to_string();
    match text.as_str() {
        "trap" => panic!("asked to trap"),
        "loop" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "oom" => {
            let mut v: Vec<Vec<u8>> = Vec::new();
            loop {
                v.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&v);
            }
        }
        "fail" => Outcome::Failed("asked to fail".into()),
        "drop" => Outcome::Dropped,
        _ => Outcome::Ok(Transformed {
            data: text.to_uppercase().into_bytes(),
            partition_keys: vec![("k".into(), text)],
        }),
    }
}

export!(Misbehave);
