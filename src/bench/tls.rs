//! TLS for the load generator's clients (`wss://` targets): a rustls client session
//! per connection over the same non-blocking socket.
//!
//! The generator measures servers on loopback, whose certificates are made for the test
//! (self-signed): it checks every signature but accepts any certificate, so the cost
//! measured is the one a real client pays, without a CA to set up. Never use this
//! configuration to talk to anything that matters.

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate; checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The generator's client configuration (TLS 1.3 and 1.2), made once.
fn config() -> io::Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(io::Error::other)
}

/// A client session for `host`.
pub fn session(host: &str) -> io::Result<Box<ClientConnection>> {
    let name = ServerName::try_from(host.to_string()).map_err(io::Error::other)?;
    let conn = ClientConnection::new(config()?, name).map_err(io::Error::other)?;
    Ok(Box::new(conn))
}

/// Plaintext from `tls` into `buf`, reading the socket as needed: `Ok(0)` at the end,
/// `WouldBlock` when the socket has nothing more now.
pub fn read(
    tls: &mut ClientConnection,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(stream)? == 0 {
            return Ok(0);
        }
        tls.process_new_packets().map_err(io::Error::other)?;
        // The handshake (and key updates) answer as they read.
        write_records(tls, stream)?;
    }
}

/// Hands `out`'s plaintext to `tls` and writes the records the kernel takes; what
/// rustls does not take stays in `out`.
pub fn flush(
    tls: &mut ClientConnection,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if !out.is_empty() {
        let taken = tls.writer().write(out)?;
        out.drain(..taken);
    }
    write_records(tls, stream)
}

fn write_records(tls: &mut ClientConnection, stream: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
