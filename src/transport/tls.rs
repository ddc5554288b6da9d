//! rustls client for `wss://` (native, feature `tls`).
//!
//! The ring crypto provider is passed explicitly to the config builder, so nothing depends on a
//! process-wide default provider being installed (ewebsock's `tls` feature panics on its I/O
//! thread in that case and its caller waits forever). Roots: webpki-roots (Mozilla's list compiled
//! in: same behaviour on every OS, no system store to find or miss) plus
//! [`TlsConfig::extra_roots_der`](super::TlsConfig::extra_roots_der).

use std::io;
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{TlsConfig, TransportError};

/// A TLS session over TCP, as used under the WebSocket once connected.
pub(crate) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

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
    Ok(Box::new(StreamOwned::new(conn, tcp)))
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
