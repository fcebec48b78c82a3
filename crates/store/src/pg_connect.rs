//! How the PostgreSQL store connects: the URL's settings, and TLS (rustls) when it asks for it.
//!
//! The URL is libpq's (`postgres://user:password@host:port/db?key=value&...`). Baton reads the
//! TLS settings itself and hands the rest to the driver:
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | absent, `disable` | never | - |
//! | `prefer` | if the server offers it | chain checked when TLS is used |
//! | `require`, `verify-ca` | always | chain checked |
//! | `verify-full` | always | chain and host name checked |
//!
//! Unlike libpq, `prefer` and `require` never accept a certificate they cannot check: a
//! connection that is encrypted but unauthenticated is open to whoever sits in between. The
//! chain is checked against `sslrootcert` (a PEM file of CA certificates) or, without it, the
//! machine's trusted roots (`sslrootcert=system` says so explicitly). `sslcert` and `sslkey`
//! (PEM files) give the client certificate a server may ask for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use postgres::config::SslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// The URL settings Baton reads itself; the driver does not know them.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];
/// Longest URL accepted.
const URL_MAX: usize = 4096;

/// Opens connections to one database, the same way each time.
pub(crate) struct Connector {
    config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the password: show where, not how.
        f.debug_struct("Connector")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What the URL asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsSettings {
    mode: Mode,
    /// `None`: the machine's trusted roots.
    root: Option<PathBuf>,
    client: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    /// `require` and `verify-ca`: the chain is checked, the host name is not.
    VerifyCa,
    VerifyFull,
}

impl Connector {
    /// Reads `url`; fails, saying what to change, on a setting it cannot honour.
    pub(crate) fn new(url: &str) -> Result<Connector, StoreError> {
        if url.len() > URL_MAX {
            return Err(StoreError::Config(format!("the database URL is longer than {URL_MAX} bytes")));
        }
        let (rest, tls) = split_tls_settings(url)?;
        let mut config: postgres::Config =
            rest.parse().map_err(|error| StoreError::Config(format!("the database URL is not valid: {error}")))?;
        config.ssl_mode(match tls.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        });
        let tls = match tls.mode {
            Mode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_config(&tls)?)),
        };
        Ok(Connector { config, tls })
    }

    pub(crate) fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
    }

    /// A hint for a failed connection, when TLS may be why.
    pub(crate) fn hint(&self, error: &str) -> Option<&'static str> {
        let tls_failure = error.contains("certificate") || error.contains("TLS") || error.contains("tls");
        (self.tls.is_some() && tls_failure).then_some(
            "the server's certificate is checked against sslrootcert=/path/to/ca.pem in the database URL, or the \
             machine's trusted roots without it; sslmode=verify-full also checks that it names the host in the URL",
        )
    }
}

/// Splits the TLS settings off the URL's query, leaving the rest byte for byte.
fn split_tls_settings(url: &str) -> Result<(String, TlsSettings), StoreError> {
    let mut settings = TlsSettings { mode: Mode::Disable, root: None, client: None };
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), settings)) };
    let (mut cert, mut key) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key_name = decode(raw_key, "a URL parameter name")?;
        if !TLS_KEYS.contains(&key_name.as_str()) {
            kept.push(pair);
            continue;
        }
        let value = decode(raw_value, &key_name)?;
        match key_name.as_str() {
            "sslmode" => {
                settings.mode = match value.as_str() {
                    "disable" => Mode::Disable,
                    "prefer" => Mode::Prefer,
                    "require" | "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    "allow" => {
                        return Err(StoreError::Config(
                            "sslmode=allow is not supported: use disable, prefer, require, verify-ca or verify-full"
                                .to_string(),
                        ));
                    }
                    other => {
                        return Err(StoreError::Config(format!(
                            "sslmode={other} is not a TLS mode: use disable, prefer, require, verify-ca or verify-full"
                        )));
                    }
                }
            }
            "sslrootcert" if value == "system" => settings.root = None,
            "sslrootcert" => settings.root = Some(PathBuf::from(value)),
            "sslcert" => cert = Some(PathBuf::from(value)),
            _ => key = Some(PathBuf::from(value)),
        }
    }
    settings.client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(StoreError::Config(
                "sslcert and sslkey go together: give both (PEM files) for a client certificate, or neither"
                    .to_string(),
            ));
        }
    };
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, settings))
}

fn decode(raw: &str, what: &str) -> Result<String, StoreError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| StoreError::Config(format!("{what} in the database URL is not UTF-8 once percent-decoded")))
}

fn client_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(match &settings.root {
        Some(path) => roots_from_file(path)?,
        None => system_roots()?,
    });
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|error| StoreError::Config(format!("cannot check the server's certificates: {error}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match settings.mode {
        Mode::VerifyFull => webpki,
        _ => Arc::new(ChainOnly(webpki)),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| StoreError::Config(format!("TLS: {error}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match &settings.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certificates_from_file(cert, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|error| StoreError::Config(format!("sslkey {}: {error}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| StoreError::Config(format!("sslcert and sslkey: {error}")))
        }
    }
}

fn certificates_from_file(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| StoreError::Config(format!("{what} {}: {error}", path.display())))?;
    if certificates.is_empty() {
        return Err(StoreError::Config(format!("{what} {}: no PEM certificate in it", path.display())));
    }
    Ok(certificates)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates_from_file(path, "sslrootcert")? {
        roots
            .add(certificate)
            .map_err(|error| StoreError::Config(format!("sslrootcert {}: {error}", path.display())))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, StoreError> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "reading the machine's trusted root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(StoreError::Config(
            "this machine has no trusted root certificates to check the database's with: pass \
             sslrootcert=/path/to/ca.pem in the database URL (or install ca-certificates)"
                .to_string(),
        ));
    }
    Ok(roots)
}

/// Checks the chain to a trusted root but not the name in it (`verify-ca`): for servers reached
/// by an address their certificate does not name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, TlsSettings) {
        split_tls_settings(url).expect("valid settings")
    }

    #[test]
    fn without_sslmode_there_is_no_tls_and_the_url_is_untouched() {
        let url = "postgres://baton:pw@db:5432/baton?options=-c%20search_path%3Dbaton";
        let (rest, settings) = split(url);
        assert_eq!(rest, url);
        assert_eq!(settings, TlsSettings { mode: Mode::Disable, root: None, client: None });
    }

    #[test]
    fn tls_settings_leave_the_url_and_the_rest_stays_byte_for_byte() {
        let (rest, settings) = split(
            "postgres://db/baton?sslmode=verify-full&options=-c%20search_path%3Dbaton+x&sslrootcert=%2Fetc%2Fca.pem\
             &sslcert=/c.pem&sslkey=/k.pem",
        );
        assert_eq!(rest, "postgres://db/baton?options=-c%20search_path%3Dbaton+x");
        assert_eq!(settings.mode, Mode::VerifyFull);
        assert_eq!(settings.root, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(settings.client, Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem"))));
        let (rest, settings) = split("postgres://db/baton?sslmode=require&sslrootcert=system");
        assert_eq!(rest, "postgres://db/baton");
        assert_eq!((settings.mode, settings.root), (Mode::VerifyCa, None));
    }

    #[test]
    fn settings_that_cannot_be_honoured_are_refused_with_what_to_use() {
        for (url, expected) in [
            ("postgres://db/b?sslmode=allow", "sslmode=allow is not supported"),
            ("postgres://db/b?sslmode=on", "sslmode=on is not a TLS mode: use disable, prefer"),
            ("postgres://db/b?sslmode=require&sslcert=/c.pem", "sslcert and sslkey go together"),
            ("postgres://db/b?sslmode=%FF", "sslmode in the database URL is not UTF-8"),
        ] {
            let error = split_tls_settings(url).expect_err(url).to_string();
            assert!(error.contains(expected), "{url}: {error}");
        }
        let error = Connector::new("postgres://db/b?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .expect_err("no such file")
            .to_string();
        assert!(error.contains("sslrootcert /nonexistent/ca.pem"), "{error}");
        let error =
            Connector::new("postgres://db/b?sslmode=disable&connect_timeout=soon").expect_err("bad").to_string();
        assert!(error.contains("the database URL is not valid"), "{error}");
        let long = format!("postgres://db/b?application_name={}", "x".repeat(URL_MAX));
        assert!(Connector::new(&long).expect_err("too long").to_string().contains("longer than"));
    }

    #[test]
    fn a_connector_shows_no_password() {
        let connector = Connector::new("postgres://baton:hunter2@db:5432/baton").expect("valid");
        let shown = format!("{connector:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("tls: false"), "{shown}");
    }
}
