//! The HTTPS listener's TLS: a rustls server config from PEM files (TLS
//! 1.2 and 1.3, ALPN h2 and http/1.1, client certificates required when a
//! client CA is given), swapped whole when the files are read again
//! (SIGHUP), so a renewed certificate is served to new connections while
//! open ones go on. Handshakes run off the accept loop, each within a
//! deadline and their number bounded, so a client that never finishes its
//! handshake holds one slot for a while and nothing else.
//!
//! Ground floor: nothing of Hydrant's below it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Where the listener's certificate, key and (for mTLS) client CA are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// A server config from the files; Err names the file and the reason.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = read(&files.cert_file, "certificate")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", files.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate",
            files.cert_file.display()
        ));
    }
    let key_pem = read(&files.key_file, "private key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no PEM private key ({e})", files.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let pem = read(ca, "client CA")?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{} holds no PEM certificate", ca.display()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {} do not make a certificate and its key: {e}",
            files.cert_file.display(),
            files.key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The config new connections get; replaced whole by [`Reloadable::reload`].
pub struct Reloadable {
    current: RwLock<(TlsFiles, Arc<ServerConfig>)>,
}

impl Reloadable {
    pub fn new(files: TlsFiles) -> Result<Arc<Reloadable>, String> {
        let config = server_config(&files)?;
        Ok(Arc::new(Reloadable {
            current: RwLock::new((files, config)),
        }))
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Reads the files again (`files`, or the current ones): a config that
    /// does not load leaves the running one in place.
    pub fn reload(&self, files: Option<TlsFiles>) -> Result<(), String> {
        let files = files.unwrap_or_else(|| {
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone()
        });
        let config = server_config(&files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (files, config);
        Ok(())
    }
}

/// Bounds of the handshakes in progress.
#[derive(Clone, Copy, Debug)]
pub struct HandshakeLimits {
    pub timeout: Duration,
    pub in_progress_max: usize,
}

/// Accepted, handshaken connections, for `axum::serve`.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`: each connection is handshaken on its own
    /// task with the config current at its accept.
    pub fn start(
        tcp: TcpListener,
        tls: Arc<Reloadable>,
        limits: HandshakeLimits,
    ) -> std::io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(limits.in_progress_max));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = TlsAcceptor::from(tls.config());
                let to_server = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(limits.timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let _ = to_server.send((s, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { rx, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor is gone only when the runtime stops.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
