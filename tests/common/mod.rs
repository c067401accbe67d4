//! Starts the real `hydrant` binary for Rust integration tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    /// Writes `streams_yaml` after `listen`/`data_dir` into a config and starts
    /// the daemon, waiting for `/health`.
    pub fn start(dir: &Path, streams_yaml: &str) -> Daemon {
        let port = free_port();
        let cfg = dir.join("hydrant.yaml");
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\n{streams_yaml}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("hydrant.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hydrant"))
            .args(["run", "-c"])
            .arg(&cfg)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let d = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if d.get("/health").is_some_and(|(s, _)| s == 200) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "hydrant did not become healthy: {}",
            std::fs::read_to_string(dir.join("hydrant.log")).unwrap_or_default()
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A minimal HTTP GET: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        unsafe_kill(self.child.id(), "TERM");
        let status = self.child.wait().ok()?;
        status.code()
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line of every file below `dir`.
pub fn lines_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(lines_under(&p));
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            out.extend(text.lines().filter(|l| !l.is_empty()).map(String::from));
        }
    }
    out
}
