//! A log-pipeline transform in Rust: parses each JSON log line, drops debug
//! lines, redacts e-mail addresses and bearer tokens in `msg`, adds the field
//! `env` from the stream's config, and partitions by `service`.
//!
//! Config (`transform.config` in the stream's YAML), all optional:
//! `{"env": "prod", "drop_levels": ["debug"]}`.

use std::cell::RefCell;

use serde_json::Value;

wit_bindgen::generate!({
    path: "../../wit",
    world: "transformer",
});

struct Settings {
    env: String,
    drop_levels: Vec<String>,
}

thread_local! {
    static SETTINGS: RefCell<Settings> = RefCell::new(Settings {
        env: "unknown".into(),
        drop_levels: vec!["debug".into()],
    });
}

struct Example;

impl Guest for Example {
    fn init(config: String) -> Result<(), String> {
        if config.trim().is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_str(&config).map_err(|e| format!("config is not JSON: {e}"))?;
        SETTINGS.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(env) = v.get("env") {
                s.env = env.as_str().ok_or("config.env must be a string")?.to_string();
            }
            if let Some(levels) = v.get("drop_levels") {
                s.drop_levels = levels
                    .as_array()
                    .ok_or("config.drop_levels must be a list")?
                    .iter()
                    .map(|l| l.as_str().map(str::to_lowercase).ok_or("config.drop_levels holds strings"))
                    .collect::<Result<_, _>>()?;
            }
            Ok(())
        })
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        SETTINGS.with(|s| {
            let s = s.borrow();
            batch.into_iter().map(|r| one(&s, r)).collect()
        })
    }
}

fn one(s: &Settings, r: Record) -> Outcome {
    let mut v: Value = match serde_json::from_slice(&r.data) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Outcome::Failed("record is JSON but not an object".into()),
        Err(e) => return Outcome::Failed(format!("record is not JSON: {e}")),
    };
    let level = v.get("level").and_then(Value::as_str).unwrap_or("").to_lowercase();
    if s.drop_levels.contains(&level) {
        return Outcome::Dropped;
    }
    if let Some(Value::String(msg)) = v.get_mut("msg") {
        *msg = redact(msg);
    }
    v["env"] = Value::String(s.env.clone());
    let service = v.get("service").and_then(Value::as_str).unwrap_or("unknown").to_string();
    let mut data = serde_json::to_vec(&v).unwrap_or_default();
    data.push(b'\n');
    Outcome::Ok(Transformed {
        data,
        partition_keys: vec![("service".into(), service)],
    })
}

/// Replaces e-mail addresses with `<email>` and the token after `Bearer `
/// with `<token>`.
fn redact(msg: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut after_bearer = false;
    for w in msg.split(' ') {
        if after_bearer && !w.is_empty() {
            words.push("<token>".into());
            after_bearer = false;
            continue;
        }
        after_bearer = w.eq_ignore_ascii_case("bearer");
        let is_email = w
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.starts_with('.'));
        words.push(if is_email { "<email>".into() } else { w.to_string() });
    }
    words.join(" ")
}

export!(Example);
