//! The operator's own certificate authority and the serving certificate of its HTTPS servers
//! (DESIGN §4 "Certificates and trust").
//!
//! A CA valid for 10 years signs a serving certificate valid for one year that covers the config
//! and webhook Service names plus `localhost` and `127.0.0.1`. Out of a cluster both live in
//! `--cert-dir` as `ca.crt`, `ca.key`, `tls.crt` and `tls.key` (keys mode 0600, every file
//! written atomically). They are reused while valid; the serving certificate is re-issued by the
//! same CA once two thirds of its life have passed, so sidecars that trust the CA notice nothing.
//! `ca.key` is not in DESIGN's list of files: it is needed to renew without changing the CA.
//!
//! TODO(operator): in a cluster, keep this material in a Secret with create-only semantics so
//! replicas agree, publish the `switchyard-ca-root` ConfigMap and the webhook `caBundle`, rotate
//! the CA (old and new in the bundle before switching), and hot-swap the serving certificate of a
//! running server (today renewal happens at start-up).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// Lifetime of the CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of the serving certificate.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start this long before they are made, to tolerate clock skew between nodes.
const BACKDATE: Duration = Duration::from_secs(3600);

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// PEM material for the operator's HTTPS servers and for clients that must trust them.
#[derive(Clone)]
pub struct CertBundle {
    /// The CA certificate: what sidecars and the webhook configuration trust.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    key_pem: String,
}

/// What [`ensure`] had to do, for the start-up log and for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertAction {
    /// Everything on disk was valid and used as is.
    Loaded,
    /// The CA was kept and a new serving certificate issued.
    RenewedServing,
    /// A new CA and serving certificate were generated.
    Generated,
}

/// The DNS names and addresses the serving certificate covers for an operator in `namespace`.
pub fn serving_names(namespace: &str) -> Vec<String> {
    let mut names = Vec::new();
    for service in ["switchyard-config", "switchyard-webhook"] {
        names.push(format!("{service}.{namespace}.svc"));
        names.push(format!("{service}.{namespace}.svc.cluster.local"));
    }
    names.push("localhost".to_string());
    names.push("127.0.0.1".to_string());
    names
}

/// Whether a certificate valid from `not_before` to `not_after` should be replaced at `now`:
/// once two thirds of its life have passed, or when it is not valid yet.
pub fn needs_renewal(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let Ok(life) = not_after.duration_since(not_before) else {
        return true;
    };
    match now.duration_since(not_before) {
        Ok(elapsed) => elapsed >= life * 2 / 3,
        Err(_) => true,
    }
}

/// Makes sure `dir` holds a valid CA and serving certificate for `namespace` at `now`,
/// generating or renewing what is missing, invalid or due.
pub fn ensure(dir: &Path, namespace: &str, now: SystemTime) -> Result<(CertBundle, CertAction)> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let names = serving_names(namespace);
    let Some((ca_pem, ca_key)) = load_ca(dir, now) else {
        let (ca_pem, ca_key) = generate_ca(now)?;
        let (cert_pem, key_pem) = issue_serving(&ca_key, &names, now)?;
        write_atomic(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&dir.join(CA_CERT), ca_pem.as_bytes(), 0o644)?;
        let bundle = store_serving(dir, ca_pem, cert_pem, key_pem)?;
        return Ok((bundle, CertAction::Generated));
    };
    if let Some(bundle) = load_serving(dir, &ca_pem, &names, now) {
        return Ok((bundle, CertAction::Loaded));
    }
    let (cert_pem, key_pem) = issue_serving(&ca_key, &names, now)?;
    let bundle = store_serving(dir, ca_pem, cert_pem, key_pem)?;
    Ok((bundle, CertAction::RenewedServing))
}

/// Generates a self-signed CA valid from `now` (less a little skew) for [`CA_VALIDITY`].
pub fn generate_ca(now: SystemTime) -> Result<(String, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + CA_VALIDITY).into();
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// Issues a serving certificate for `names` signed by the CA key, valid for
/// [`SERVING_VALIDITY`]; returns the certificate and key PEM.
pub fn issue_serving(
    ca_key: &KeyPair,
    names: &[String],
    now: SystemTime,
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "switchyard-operator");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + SERVING_VALIDITY).into();
    // NB: the issuer is rebuilt from the same fixed parameters as the CA, so its name matches
    // the stored `ca.crt` exactly; the signature comes from the stored key.
    let issuer = Issuer::new(ca_params(), ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The validity period (`notBefore`, `notAfter`) of a DER certificate.
pub fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, cert, _) = der_tlv(der, 0x30)?;
    let (_, mut tbs, _) = der_tlv(cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_any(tbs)?.2;
    }
    // serialNumber, signature, issuer: skipped.
    for _ in 0..3 {
        tbs = der_any(tbs)?.2;
    }
    let (_, validity, _) = der_tlv(tbs, 0x30)?;
    let (tag, not_before, rest) = der_any(validity)?;
    let not_before = der_time(tag, not_before)?;
    let (tag, not_after, _) = der_any(rest)?;
    Some((not_before, der_time(tag, not_after)?))
}

// === impl CertBundle ===

impl CertBundle {
    /// A rustls server configuration serving this certificate, with HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let path = PathBuf::from(TLS_CERT);
        let bad = |message: String| Error::InvalidCertificate {
            path: path.clone(),
            message,
        };
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
        // An explicit provider, so nothing depends on a process-wide default being installed.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The CA certificate in DER, for clients that build their own trust store.
    pub fn ca_der(&self) -> Option<CertificateDer<'static>> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).ok()
    }
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"***")
            .finish()
    }
}

// === helpers ===

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "switchyard-ca");
    dn.push(DnType::OrganizationName, "switchyard");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The stored CA, if both files parse and it has not expired.
fn load_ca(dir: &Path, now: SystemTime) -> Option<(String, KeyPair)> {
    let ca_pem = std::fs::read_to_string(dir.join(CA_CERT)).ok()?;
    let key = KeyPair::from_pem(&std::fs::read_to_string(dir.join(CA_KEY)).ok()?).ok()?;
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).ok()?;
    let (not_before, not_after) = validity(&der)?;
    // TODO(operator): rotate the CA at two thirds of its life, publishing both in the bundle.
    (not_before <= now && now < not_after).then_some((ca_pem, key))
}

/// The stored serving certificate, if it parses, matches its key, covers `names` and is not
/// due for renewal.
fn load_serving(dir: &Path, ca_pem: &str, names: &[String], now: SystemTime) -> Option<CertBundle> {
    let cert_pem = std::fs::read_to_string(dir.join(TLS_CERT)).ok()?;
    let key_pem = std::fs::read_to_string(dir.join(TLS_KEY)).ok()?;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (not_before, not_after) = validity(&der)?;
    if needs_renewal(not_before, not_after, now) {
        return None;
    }
    // NB: a dNSName is stored verbatim in the DER, so a byte search is enough to notice that the
    // namespace (hence the Service names) changed since the certificate was issued.
    if !names
        .iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_err())
        .all(|name| der.windows(name.len()).any(|w| w == name.as_bytes()))
    {
        return None;
    }
    let bundle = CertBundle {
        ca_pem: ca_pem.to_string(),
        cert_pem,
        key_pem,
    };
    // Refuses a key that does not match the certificate (a crash between two writes).
    bundle.server_config().ok()?;
    Some(bundle)
}

fn store_serving(
    dir: &Path,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
) -> Result<CertBundle> {
    write_atomic(&dir.join(TLS_KEY), key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.join(TLS_CERT), cert_pem.as_bytes(), 0o644)?;
    Ok(CertBundle {
        ca_pem,
        cert_pem,
        key_pem,
    })
}

/// Writes through a temporary file in the same directory and renames it over `path`, so a
/// reader never sees half a file; the mode is set at creation so a key is never world-readable.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|source| io(&tmp, source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io(&tmp, source))?;
    std::fs::rename(&tmp, path).map_err(|source| io(path, source))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One DER element: tag, contents and what follows.
fn der_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn der_tlv(input: &[u8], want: u8) -> Option<(u8, &[u8], &[u8])> {
    der_any(input).filter(|(tag, _, _)| *tag == want)
}

/// `UTCTime` (`YYMMDDHHMMSSZ`) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`), as RFC 5280 requires.
fn der_time(tag: u8, bytes: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let days = days_from_civil(year, field(0)?, field(2)?);
    let secs = days * 86_400 + field(4)? * 3600 + field(6)? * 60 + field(8)?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
