//! rustls client for `wss://` (native, feature `tls`).
//!
//! The ring crypto provider is passed explicitly to the config builder, so nothing depends on a
//! process-wide default provider being installed (ewebsock's `tls` feature panics on its I/O
//! thread in that case and its caller waits forever). Roots: webpki-roots (Mozilla's list compiled
//! in: same behaviour on every OS, no system store to find or miss) plus
//! [`TlsConfig::extra_roots_der`](super::TlsConfig::extra_roots_der).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::native::{Gated, Reads};
use super::{TlsConfig, TransportError};

/// A TLS session over TCP, usable on a nonblocking socket.
///
/// Not `rustls::StreamOwned`: its `write` can return `Ok(0)` on a nonblocking socket (it reports
/// success after a partial flush of earlier records, then finds rustls' 64 KiB send buffer still
/// full), which tungstenite takes for "connection reset while sending". Here pending records are
/// written out first and a full socket is always reported as `WouldBlock`.
pub(crate) struct TlsStream {
    conn: ClientConnection,
    tcp: TcpStream,
}

impl TlsStream {
    /// The TCP socket underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Writes encrypted records until none is left or the socket would block.
    fn write_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.tcp)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Reads plaintext, taking TLS records from the socket through the [`Reads`] gate.
    pub(crate) fn read_gated(&mut self, buf: &mut [u8], reads: &mut Reads) -> io::Result<usize> {
        loop {
            // Ok(0) after close_notify, UnexpectedEof after a TCP EOF without it.
            match self.conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            self.conn.read_tls(&mut Gated {
                inner: &mut self.tcp,
                reads,
            })?;
            if let Err(e) = self.conn.process_new_packets() {
                // Best effort to tell the peer why (the alert is queued by rustls).
                let _ = self.write_pending();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Records rustls wants to answer with (e.g. a key update): send them if possible.
            match self.write_pending() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.write_pending()?;
        let n = self.conn.writer().write(buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Push out what was just encrypted; a full socket is fine, `n` bytes were taken.
        match self.write_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.tcp.flush()
    }
}

/// The client configuration for `tls` (shared default when no extra roots are given).
pub(crate) fn client_config(tls: Option<&TlsConfig>) -> Result<Arc<ClientConfig>, TransportError> {
    match tls {
        Some(custom) if *custom != TlsConfig::default() => Ok(Arc::new(build(custom)?)),
        _ => {
            static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
            if let Some(config) = DEFAULT.get() {
                return Ok(config.clone());
            }
            let config = Arc::new(build(&TlsConfig::default())?);
            Ok(DEFAULT.get_or_init(|| config).clone())
        }
    }
}

fn build(tls: &TlsConfig) -> Result<ClientConfig, TransportError> {
    let mut roots = RootCertStore::empty();
    if !tls.only_extra_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for der in &tls.extra_roots_der {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TransportError::Tls(format!("invalid extra root certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Runs the TLS handshake on a blocking socket (with read/write timeouts set by the caller).
pub(crate) fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    mut tcp: TcpStream,
) -> Result<Box<TlsStream>, TransportError> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| TransportError::Tls(format!("invalid server name {host:?}: {e}")))?;
    let mut conn =
        ClientConnection::new(config, name).map_err(|e| TransportError::Tls(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(handshake_error)?;
    }
    Ok(Box::new(TlsStream { conn, tcp }))
}

fn handshake_error(e: io::Error) -> TransportError {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return TransportError::Tls(tls.to_string());
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            TransportError::Connect("timed out during the TLS handshake".into())
        }
        _ => TransportError::Tls(format!("TLS handshake failed: {e}")),
    }
}
