//! A Garage server on loopback for the suite: one key, buckets on demand,
//! an object store client for a bucket and the daemon's config for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use object_store::ObjectStore;

use crate::daemon::free_port;

/// A Garage server on loopback, one key, buckets on demand.
pub struct Garage {
    bin: PathBuf,
    config: PathBuf,
    proc: Child,
    endpoint: String,
    key_id: String,
    secret: String,
}

/// How long Garage may take to start and answer.
const START_WAIT: Duration = Duration::from_secs(30);

/// Calls `f` every `pause` until it succeeds, for up to [`START_WAIT`] from
/// `since`; then its last error.
fn until_ok<T>(
    since: Instant,
    pause: Duration,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if since.elapsed() > START_WAIT => return Err(e),
            Err(_) => std::thread::sleep(pause),
        }
    }
}

impl Garage {
    /// The server's process id (its CPU is counted beside the daemon's).
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// Starts the server with its data under `dir`, at nice value `nice`
    /// (through `nice(1)`, so that every thread it starts has it).
    pub fn start(bin: &Path, dir: &Path, nice: i32) -> anyhow::Result<Garage> {
        if !bin.exists() {
            bail!(
                "{} not found: install Garage (scripts/test.sh does: cargo install garage --locked) or pass --garage",
                bin.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let (s3, rpc, admin) = (free_port()?, free_port()?, free_port()?);
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                d = dir.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("garage.log"))?;
        let mut cmd = if nice == 0 {
            Command::new(bin)
        } else {
            let mut c = Command::new("nice");
            c.arg("-n").arg(nice.to_string()).arg(bin);
            c
        };
        let proc = cmd
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut g = Garage {
            bin: bin.to_path_buf(),
            config,
            proc,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
        };
        let t = Instant::now();
        let node = until_ok(t, Duration::from_millis(100), || {
            let out = g.cli(&["node", "id", "-q"])?;
            out.trim()
                .split('@')
                .next()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .with_context(|| format!("no node id in: {out}"))
        })
        .with_context(|| {
            format!(
                "Garage did not start (see {})",
                dir.join("garage.log").display()
            )
        })?;
        // `node id` reads the node's key from disk; the first call that
        // needs the server running is this one, so it is retried until
        // the server listens.
        until_ok(t, Duration::from_millis(200), || {
            g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])
        })?;
        g.cli(&["layout", "apply", "--version", "1"])?;
        let out = g.cli(&["key", "create", "bench"])?;
        let field = |label: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .with_context(|| format!("no {label} in: {out}"))
        };
        g.key_id = field("Key ID:")?;
        g.secret = field("Secret key:")?;
        Ok(g)
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "garage {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        self.cli(&["bucket", "create", name])?;
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            &self.key_id,
        ])?;
        Ok(())
    }

    pub fn store(&self, bucket: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_region("garage")
                .with_bucket_name(bucket)
                .with_access_key_id(&self.key_id)
                .with_secret_access_key(&self.secret)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .build()?,
        ))
    }

    pub fn store_yaml(&self) -> String {
        format!(
            "object_store:\n  type: s3\n  endpoint: {}\n  region: garage\n  access_key_id: {}\n  secret_access_key: {}\n  allow_http: true\n",
            self.endpoint, self.key_id, self.secret
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}
