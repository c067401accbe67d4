//! The `hydrant` command: run the daemon, or check a config file.

// Input, the network and the disk must never panic the daemon: errors are
// returned and worded, not unwrapped (tests may unwrap; clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hydrant::config::Config;

// jemalloc with the daemon's settings (`hydrant::alloc`).
hydrant::memory_allocator!();

#[derive(Parser)]
#[command(
    name = "hydrant",
    version,
    about = "Self-hosted streaming delivery with the Firehose API"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "HYDRANT_LOG_FORMAT"
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (with no config: log in ./hydrant-data, stream `default`
    /// delivering JSON lines to ./hydrant-data/out).
    Run {
        /// The YAML config file (re-read on SIGHUP).
        #[arg(short, long, env = "HYDRANT_CONFIG")]
        config: Option<PathBuf>,
        /// Listen on this address instead of the config's `listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Decrypt an object Hydrant encrypted (docs/encryption.md). The output is
    /// the object as it was before encryption (e.g. still gzip-compressed).
    Decrypt {
        /// The encrypted object.
        input: PathBuf,
        /// Where to write the plaintext (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// A key as ID=FILE (32 raw bytes, 64 hex characters or base64); repeatable.
        #[arg(long = "key-file", value_name = "ID=FILE")]
        key_files: Vec<String>,
        /// A key as ID=ENV_VAR (64 hex characters or base64); repeatable.
        #[arg(long = "key-env", value_name = "ID=VAR")]
        key_envs: Vec<String>,
        /// Take the keys of every stream in this config file.
        #[arg(short, long, env = "HYDRANT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Ask the running daemon to reload its config file (it must be the file
    /// it was started with): the file is validated here first, then the
    /// daemon gets SIGHUP and logs what it applied.
    Reload {
        /// The YAML config file.
        #[arg(short, long, env = "HYDRANT_CONFIG")]
        config: PathBuf,
    },
    /// Print the running daemon's streams: ingest rate, backlog, freshness,
    /// last delivery, last error.
    Status {
        /// The daemon's config file (to find its address).
        #[arg(short, long, env = "HYDRANT_CONFIG")]
        config: Option<PathBuf>,
        /// The daemon's address instead (default http://127.0.0.1:4573).
        #[arg(long)]
        url: Option<String>,
    },
    /// Work with the Iceberg tables streams deliver into.
    Iceberg {
        #[command(subcommand)]
        command: IcebergCommand,
    },
    /// Work with WebAssembly transforms.
    Transform {
        #[command(subcommand)]
        command: TransformCommand,
    },
    /// Check a config file and print every error with its YAML path.
    Validate {
        /// The YAML config file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum IcebergCommand {
    /// List the files in a table's directory that no snapshot references
    /// (written for a commit that never happened, or referenced only by
    /// expired snapshots) and delete them.
    CleanOrphans {
        /// The daemon's config file (its catalogs and streams).
        #[arg(short, long, env = "HYDRANT_CONFIG")]
        config: Option<PathBuf>,
        /// The table of this stream's iceberg destination.
        #[arg(long, conflicts_with = "table")]
        stream: Option<String>,
        /// The table as NAMESPACE.TABLE, in `--catalog`.
        #[arg(long)]
        table: Option<String>,
        /// The catalog of `--table`.
        #[arg(long, default_value = "hydrant")]
        catalog: String,
        /// Only files last written longer ago than this are orphans: a
        /// running daemon's files wait for their commit.
        #[arg(long, default_value_t = 86_400)]
        older_than_secs: u64,
        /// List them, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TransformCommand {
    /// Run a transform component on local records (one per line of an NDJSON
    /// file, or of standard input with `-`) and print each outcome as a JSON
    /// line: `ok` with the new data and partition keys, `dropped`, or
    /// `failed` with the reason.
    Test {
        /// The component (.wasm).
        #[arg(long)]
        wasm: PathBuf,
        /// The records, one per line.
        #[arg(long)]
        input: PathBuf,
        /// The string given to the component's init (a stream's
        /// `transform.config`; a YAML map is given as JSON).
        #[arg(long, default_value = "")]
        config: String,
        /// Limit of one call, as in the stream's `transform.timeout_ms`.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// Memory cap, as in `transform.memory_mb_max`.
        #[arg(long, default_value_t = 256)]
        memory_mb_max: u64,
    },
}

fn transform_test(
    wasm: PathBuf,
    input: PathBuf,
    config: String,
    timeout_ms: u64,
    memory_mb_max: u64,
) -> anyhow::Result<()> {
    use hydrant::transform::{Transform, TransformConfig};
    let frames = read_test_records(&input)?;
    let cache = user_cache_dir();
    let t = Transform::load(
        TransformConfig {
            wasm,
            config,
            batch_records_max: 10_000,
            batch_bytes_max: 4 << 20,
            timeout: std::time::Duration::from_millis(timeout_ms),
            memory_bytes_max: (memory_mb_max << 20) as usize,
            instances_max: 1,
        },
        cache.as_deref(),
    )?;
    let started = std::time::Instant::now();
    let outcomes = t.run(&frames);
    let took = started.elapsed();
    let mut counts = [0usize; 3];
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, o) in outcomes.iter().enumerate() {
        let line = outcome_line(i, o, &mut counts);
        std::io::Write::write_all(&mut out, line.to_string().as_bytes())?;
        std::io::Write::write_all(&mut out, b"\n")?;
    }
    std::io::Write::flush(&mut out)?;
    eprintln!(
        "{} records: {} ok, {} dropped, {} failed ({:.1} ms)",
        frames.len(),
        counts[0],
        counts[1],
        counts[2],
        took.as_secs_f64() * 1e3
    );
    Ok(())
}

/// The records of `transform test`: one per non-empty line of `input`, or of
/// standard input for `-`.
fn read_test_records(input: &std::path::Path) -> anyhow::Result<Vec<hydrant::record::Record>> {
    use anyhow::Context;
    use hydrant::record::Record;
    let text = if input.as_os_str() == "-" {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?
    };
    let now = chrono::Utc::now().timestamp_millis();
    let frames: Vec<Record> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| Record {
            offset: i as u64,
            arrival_ms: now,
            key: bytes::Bytes::new(),
            data: bytes::Bytes::copy_from_slice(l),
        })
        .collect();
    Ok(frames)
}

/// The JSON line `transform test` prints for the outcome of record `i`
/// (counted from 0), counting it in `counts` (ok, dropped, failed).
fn outcome_line(
    i: usize,
    o: &hydrant::transform::Outcome,
    counts: &mut [usize; 3],
) -> serde_json::Value {
    use hydrant::transform::Outcome;
    match o {
        Outcome::Ok { data, keys } => {
            counts[0] += 1;
            let keys: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let mut j =
                serde_json::json!({ "record": i + 1, "outcome": "ok", "partition_keys": keys });
            match std::str::from_utf8(data) {
                Ok(s) => j["data"] = s.into(),
                Err(_) => {
                    use base64::Engine;
                    j["data_base64"] = base64::engine::general_purpose::STANDARD
                        .encode(data)
                        .into()
                }
            }
            j
        }
        Outcome::Dropped => {
            counts[1] += 1;
            serde_json::json!({ "record": i + 1, "outcome": "dropped" })
        }
        Outcome::Failed(why) => {
            counts[2] += 1;
            serde_json::json!({ "record": i + 1, "outcome": "failed", "reason": why })
        }
    }
}

fn reload_cmd(path: PathBuf) -> anyhow::Result<()> {
    use anyhow::Context;
    let cfg = Config::load(&path).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid; the daemon keeps its config:\n{e}",
            path.display()
        )
    })?;
    let lock = cfg.data_dir.join("LOCK");
    let pid = std::fs::read_to_string(&lock)
        .with_context(|| format!("no daemon found: cannot read {}", lock.display()))?;
    let pid = pid.trim();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("no daemon found: {} holds no pid", lock.display());
    }
    let status = std::process::Command::new("kill")
        .args(["-HUP", pid])
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        anyhow::bail!("no daemon with pid {pid} (from {})", lock.display());
    }
    println!(
        "sent SIGHUP to hydrant (pid {pid}); it logs the streams it added, removed and changed"
    );
    Ok(())
}

fn status_cmd(config: Option<PathBuf>, url: Option<String>) -> anyhow::Result<()> {
    let base = match (url, config) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(p)) => {
            let c = Config::load(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            format!("http://{}", c.listen)
        }
        (None, None) => "http://127.0.0.1:4573".to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (a, b) = rt
        .block_on(async {
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?;
            let get = || async {
                anyhow::Ok(
                    http.get(format!("{base}/v1/status"))
                        .send()
                        .await?
                        .error_for_status()?
                        .json::<serde_json::Value>()
                        .await?,
                )
            };
            // Two samples a second apart give the ingest rate.
            let a = get().await?;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let b = get().await?;
            anyhow::Ok((a, b))
        })
        .map_err(|e| anyhow::anyhow!("cannot reach the daemon at {base}: {e:#}"))?;
    let empty = Vec::new();
    let before = a["streams"].as_array().unwrap_or(&empty);
    let now = chrono::Utc::now().timestamp_millis();
    println!(
        "{:<24} {:>6} {:>12} {:>10} {:>10} {:>14}  {:<28} LAST ERROR",
        "STREAM", "SHARDS", "RECORDS/S", "BACKLOG", "FRESHNESS", "LAST DELIVERY", "DESTINATION"
    );
    for s in b["streams"].as_array().unwrap_or(&empty) {
        let name = s["name"].as_str().unwrap_or("?");
        let prev = before
            .iter()
            .find(|p| p["name"] == s["name"])
            .and_then(|p| p["incoming_records"].as_u64())
            .unwrap_or(0);
        let rate = s["incoming_records"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(prev);
        let last = match s["last_delivery_ms"].as_i64() {
            Some(ms) => format!("{:.0} s ago", (now - ms).max(0) as f64 / 1000.0),
            None => "never".into(),
        };
        println!(
            "{:<24} {:>6} {:>12} {:>10} {:>9}s {:>14}  {:<28} {}",
            name,
            s["shards"].as_u64().unwrap_or(0),
            rate,
            s["backlog_records"].as_i64().unwrap_or(0),
            s["data_freshness_seconds"].as_i64().unwrap_or(0),
            last,
            s["destination"].as_str().unwrap_or(""),
            s["last_error"].as_str().unwrap_or("-"),
        );
    }
    print_applications(&a, &b);
    print_cluster(&b["cluster"]);
    Ok(())
}

/// The applications part of `status`, from two samples a second apart.
fn print_applications(a: &serde_json::Value, b: &serde_json::Value) {
    let empty = Vec::new();
    let apps = b["applications"].as_array().unwrap_or(&empty);
    if apps.is_empty() {
        return;
    }
    let before = a["applications"].as_array().unwrap_or(&empty);
    println!();
    println!(
        "{:<24} {:<9} {:>10} {:>10} {:>8} {:>8} {:>10} {:>8}  LAST ERROR",
        "APPLICATION", "STATE", "RECORDS/S", "OUT", "LATE", "ERRORS", "BEHIND MS", "WINDOWS"
    );
    for x in apps {
        let prev = before
            .iter()
            .find(|p| p["name"] == x["name"])
            .and_then(|p| p["records_in"].as_u64())
            .unwrap_or(0);
        println!(
            "{:<24} {:<9} {:>10} {:>10} {:>8} {:>8} {:>10} {:>8}  {}",
            x["name"].as_str().unwrap_or("?"),
            x["state"].as_str().unwrap_or("?"),
            x["records_in"].as_u64().unwrap_or(0).saturating_sub(prev),
            x["records_out"].as_u64().unwrap_or(0),
            x["late_rows"].as_u64().unwrap_or(0),
            x["error_rows"].as_u64().unwrap_or(0),
            x["millis_behind_latest"].as_i64().unwrap_or(0),
            x["open_windows"].as_u64().unwrap_or(0),
            x["error"].as_str().unwrap_or("-"),
        );
    }
}

/// The cluster part of `status`: nodes, JetStream's health, and which node
/// delivers which shard.
fn print_cluster(c: &serde_json::Value) {
    if c.is_null() {
        return;
    }
    let empty = Vec::new();
    let js = &c["jetstream"];
    println!(
        "\nCLUSTER  node {}  NATS {}  JetStream {}  replicas {}",
        c["node"].as_str().unwrap_or("?"),
        if c["connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "DISCONNECTED"
        },
        if js["ok"].as_bool() == Some(true) {
            format!(
                "ok ({} streams, {} bytes)",
                js["streams"].as_u64().unwrap_or(0),
                js["storage_bytes"].as_u64().unwrap_or(0)
            )
        } else {
            format!("FAILING: {}", js["error"].as_str().unwrap_or("?"))
        },
        c["replicas"].as_u64().unwrap_or(0),
    );
    println!("{:<24} {:>8} {:>14}", "NODE", "ALIVE", "SEEN");
    for n in c["nodes"].as_array().unwrap_or(&empty) {
        println!(
            "{:<24} {:>8} {:>12}ms",
            n["node"].as_str().unwrap_or("?"),
            if n["alive"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            n["seen_ms_ago"].as_i64().unwrap_or(0),
        );
    }
    println!("{:<56} {:<16} CHECKPOINT", "DELIVERY LEASE", "OWNER");
    for l in c["leases"].as_array().unwrap_or(&empty) {
        println!(
            "{:<56} {:<16} {}",
            l["lease"].as_str().unwrap_or("?"),
            l["owner"].as_str().unwrap_or("-"),
            l["checkpoint"]
                .as_u64()
                .map_or("-".to_string(), |o| o.to_string()),
        );
    }
}

/// Where the CLI caches compiled transforms: `$XDG_CACHE_HOME/hydrant/transforms`
/// or `~/.cache/hydrant/transforms`.
fn user_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("hydrant").join("transforms"))
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYDRANT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn decrypt_cmd(
    input: PathBuf,
    output: Option<PathBuf>,
    key_files: Vec<String>,
    key_envs: Vec<String>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use hydrant::encode::encrypt::{self, SecretKey};
    let mut keys: Vec<(String, SecretKey)> = Vec::new();
    for (spec, from_file) in key_files
        .iter()
        .map(|s| (s, true))
        .chain(key_envs.iter().map(|s| (s, false)))
    {
        let (id, src) = spec
            .split_once('=')
            .with_context(|| format!("`{spec}` is not ID=SOURCE"))?;
        let material = if from_file {
            std::fs::read(src).with_context(|| format!("cannot read key file {src}"))?
        } else {
            std::env::var(src)
                .with_context(|| format!("environment variable {src} is not set"))?
                .into_bytes()
        };
        let key = SecretKey::parse(&material).map_err(|e| anyhow::anyhow!("key {id}: {e}"))?;
        keys.push((id.to_string(), key));
    }
    if let Some(path) = config {
        let cfg = Config::load(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for s in cfg.streams.values() {
            if let Some(enc) = &s.encryption {
                keys.extend(enc.keys.iter().cloned());
            }
        }
        // Error outputs and backups of streams sealed at rest are sealed
        // with the log's keys.
        keys.extend(
            cfg.log
                .keys
                .secrets()
                .map(|(id, k)| (id.to_string(), k.clone())),
        );
        if let Some(k) = hydrant::log::seal::read_builtin(&cfg.data_dir)? {
            keys.push((hydrant::log::seal::BUILTIN_KEY.to_string(), k));
        }
    }
    let data = std::fs::read(&input).with_context(|| format!("cannot read {}", input.display()))?;
    let plain = encrypt::decrypt(&data, |id| {
        keys.iter().find(|(k, _)| k == id).map(|(_, v)| v.clone())
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    match output {
        Some(p) => {
            std::fs::write(&p, plain).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => std::io::Write::write_all(&mut std::io::stdout(), &plain)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decrypt {
            input,
            output,
            key_files,
            key_envs,
            config,
        } => exit_code(
            "decrypt",
            decrypt_cmd(input, output, key_files, key_envs, config),
        ),
        Command::Reload { config } => exit_code("reload", reload_cmd(config)),
        Command::Status { config, url } => exit_code("status", status_cmd(config, url)),
        Command::Transform {
            command:
                TransformCommand::Test {
                    wasm,
                    input,
                    config,
                    timeout_ms,
                    memory_mb_max,
                },
        } => exit_code(
            "transform test",
            transform_test(wasm, input, config, timeout_ms, memory_mb_max),
        ),
        Command::Iceberg {
            command:
                IcebergCommand::CleanOrphans {
                    config,
                    stream,
                    table,
                    catalog,
                    older_than_secs,
                    dry_run,
                },
        } => exit_code(
            "iceberg clean-orphans",
            clean_orphans_cmd(
                config,
                (stream, table, catalog),
                std::time::Duration::from_secs(older_than_secs),
                dry_run,
            ),
        ),
        Command::Validate { file } => validate_cmd(file),
        Command::Run { config, listen } => run_cmd(config, listen, &cli.log_format),
    }
}

/// The exit code of a subcommand; an error is printed after `hydrant COMMAND:`.
fn exit_code(command: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hydrant {command}: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `hydrant iceberg clean-orphans`: prints each orphan (`LOCATION BYTES`)
/// and what was done.
fn clean_orphans_cmd(
    config: Option<PathBuf>,
    (stream, table, catalog): (Option<String>, Option<String>, String),
    older_than: std::time::Duration,
    dry_run: bool,
) -> anyhow::Result<()> {
    let c = match &config {
        Some(path) => Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Config::embedded_default().map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let (cat, ns, name) = match (stream, table) {
        (Some(s), _) => {
            let sc = c
                .streams
                .get(&s)
                .ok_or_else(|| anyhow::anyhow!("no stream `{s}` in the config"))?;
            let hydrant::config::Destination::Iceberg(i) = &sc.destination else {
                anyhow::bail!("stream `{s}` does not deliver to an iceberg table");
            };
            (i.catalog.clone(), i.namespace.clone(), i.table.clone())
        }
        (None, Some(t)) => {
            let (ns, name) = t
                .split_once('.')
                .ok_or_else(|| anyhow::anyhow!("--table is NAMESPACE.TABLE"))?;
            let cat = c
                .iceberg_catalogs
                .get(&catalog)
                .ok_or_else(|| anyhow::anyhow!("no catalog `{catalog}` in the config"))?;
            (cat.clone(), ns.to_string(), name.to_string())
        }
        (None, None) => anyhow::bail!("name the table: --stream NAME or --table NAMESPACE.TABLE"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let orphans = rt
        .block_on(hydrant::sink::iceberg::orphans::clean(
            &cat,
            (&ns, &name),
            older_than,
            dry_run,
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes: u64 = orphans.iter().map(|o| o.bytes).sum();
    for o in &orphans {
        println!("{} {}", o.location, o.bytes);
    }
    let verb = if dry_run { "found" } else { "deleted" };
    println!(
        "{verb} {} orphan files ({bytes} bytes) in {ns}.{name}",
        orphans.len()
    );
    Ok(())
}

fn validate_cmd(file: PathBuf) -> ExitCode {
    match Config::load(&file) {
        Ok(c) => {
            // A transform is checked whole: it compiles, implements the
            // world, starts and accepts its config.
            let mut failed = 0;
            for s in c.streams.values() {
                if let Some(t) = &s.transform
                    && let Err(e) =
                        hydrant::transform::Transform::load(t.clone(), user_cache_dir().as_deref())
                {
                    eprintln!("{}: streams.{}.transform.wasm: {e}", file.display(), s.name);
                    failed += 1;
                }
            }
            // A SQL application is planned whole: its SQL, schema and outputs.
            for (name, a) in &c.analytics.applications {
                if let Err(e) = hydrant::analytics::build(a, c.analytics.groups_max) {
                    eprintln!("{}: analytics.applications.{name}: {e}", file.display());
                    failed += 1;
                }
            }
            if failed > 0 {
                eprintln!("{}: {failed} error(s)", file.display());
                return ExitCode::from(1);
            }
            println!("{}: ok ({} streams)", file.display(), c.streams.len());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!("{}: {} error(s)", file.display(), errors.0.len());
            ExitCode::from(1)
        }
    }
}

fn run_cmd(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    log_format: &str,
) -> ExitCode {
    init_tracing(log_format);
    let config_path = config.clone();
    let loaded = match &config {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    };
    let config = match loaded {
        Ok(mut c) => {
            if let Some(addr) = listen {
                c.listen = addr;
            }
            c
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("config error: {e}");
            }
            return ExitCode::from(1);
        }
    };
    limit_malloc_arenas(config.limits.malloc_arenas);
    hydrant::sched::set_ack_slice(config.limits.ack_slice_us);
    config.limits.gzip.set();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(hydrant::sched::ack_thread)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(hydrant::daemon::run(config, config_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hydrant: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Caps glibc's malloc arenas (`limits.malloc_arenas`), before any thread
/// starts. `MALLOC_ARENA_MAX` or a `GLIBC_TUNABLES` arena setting in the
/// environment wins: whoever set it meant it.
fn limit_malloc_arenas(arenas: usize) {
    let preset = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if preset {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let n = i32::try_from(arenas).unwrap_or(i32::MAX);
        // SAFETY: mallopt only changes allocator settings; called before
        // the runtime starts any thread.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, n) } != 1 {
            tracing::warn!(arenas, "cannot cap glibc's malloc arenas");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}
