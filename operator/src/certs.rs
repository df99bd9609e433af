//! The operator's own certificate authority and the serving certificate of its HTTPS servers
//! (DESIGN §4 "Certificates and trust").
//!
//! A CA valid for 10 years signs a serving certificate valid for one year that covers the config
//! and webhook Service names plus `localhost` and `127.0.0.1`. The material is a small set of
//! PEM entries ([`Material`]) kept either as files in `--cert-dir` or as the keys of a Secret
//! (see [`crate::trust`]); [`plan`] decides, storage aside, what it must become:
//!
//! - the serving certificate is re-issued by the same CA once two thirds of its life have passed
//!   (or when the Service names change), so sidecars that trust the CA notice nothing;
//! - at two thirds of the CA's life a next CA is *staged*: it joins the published bundle while
//!   the old one still signs. After [`CA_OVERLAP`], long enough for every bundle copy to be
//!   updated, it becomes the CA and signs a new serving certificate; the previous CA stays in
//!   the bundle for another [`CA_OVERLAP`], so no client is ever stranded.
//!
//! `ca.key` is not in DESIGN's list of files: renewing without changing the CA needs it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::names::{CONFIG_SERVICE, WEBHOOK_SERVICE};
use crate::{Error, Result};

/// Lifetime of the CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of the serving certificate.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a staged CA is published before it signs, and the previous one after it stopped.
/// Kubelets refresh ConfigMap volumes within minutes; a day leaves room for an operator that
/// was down.
pub const CA_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Certificates start this long before they are made, to tolerate clock skew between nodes.
const BACKDATE: Duration = Duration::from_secs(3600);

/// The entries of [`Material`]: file names in `--cert-dir`, keys of the Secret.
pub mod entry {
    pub const CA_CERT: &str = "ca.crt";
    pub const CA_KEY: &str = "ca.key";
    pub const TLS_CERT: &str = "tls.crt";
    pub const TLS_KEY: &str = "tls.key";
    /// A staged CA: published, not signing yet.
    pub const NEXT_CERT: &str = "ca-next.crt";
    pub const NEXT_KEY: &str = "ca-next.key";
    /// The CA before the last rotation: still published for a while.
    pub const PREVIOUS_CERT: &str = "ca-previous.crt";
    /// Every entry, for loading.
    pub const ALL: [&str; 7] = [
        CA_CERT,
        CA_KEY,
        TLS_CERT,
        TLS_KEY,
        NEXT_CERT,
        NEXT_KEY,
        PREVIOUS_CERT,
    ];
    /// Entries holding private keys: mode 0600 on disk.
    pub fn is_key(name: &str) -> bool {
        name.ends_with(".key")
    }
}

/// Stored certificate material: PEM text by [`entry`] name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Material(pub BTreeMap<String, String>);

/// PEM material for the operator's HTTPS servers and for clients that must trust them.
#[derive(Clone)]
pub struct CertBundle {
    /// Every CA clients must trust now (the signing CA, plus a staged or previous one): what
    /// sidecars and the webhook configuration get.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    key_pem: String,
}

/// What [`plan`] had to do, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertAction {
    /// Everything was valid and is used as is.
    Loaded,
    /// The CA was kept and a new serving certificate issued.
    RenewedServing,
    /// A new CA and serving certificate were generated.
    Generated,
    /// A next CA was staged into the bundle.
    StagedCa,
    /// The staged CA took over and signed a new serving certificate.
    RotatedCa,
}

/// A TLS certificate resolver whose certificate can be replaced while servers run: renewal
/// swaps it, connections already open keep theirs.
#[derive(Debug)]
pub struct ServingCert(ArcSwap<CertifiedKey>);

/// A parsed CA: its certificate, key and validity.
struct Ca {
    pem: String,
    key: KeyPair,
    not_before: SystemTime,
    not_after: SystemTime,
    key_id: Option<Vec<u8>>,
}

/// The DNS names and addresses the serving certificate covers for an operator in `namespace`.
pub fn serving_names(namespace: &str) -> Vec<String> {
    let mut names = Vec::new();
    for service in [CONFIG_SERVICE, WEBHOOK_SERVICE] {
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

/// What `material` must become at `now` for a server named `names`, and why. Deterministic but
/// for the keys it generates; the caller stores the result when it differs from the input.
pub fn plan(
    material: &Material,
    names: &[String],
    now: SystemTime,
) -> Result<(Material, CertAction)> {
    use entry::*;

    let Some(mut ca) = material.ca(CA_CERT, CA_KEY, now) else {
        let (ca_pem, ca_key) = generate_ca(now)?;
        let (cert_pem, key_pem) = issue_serving(&ca_pem, &ca_key, names, now)?;
        let mut out = Material::default();
        out.set(CA_CERT, ca_pem);
        out.set(CA_KEY, ca_key.serialize_pem());
        out.set(TLS_CERT, cert_pem);
        out.set(TLS_KEY, key_pem);
        return Ok((out, CertAction::Generated));
    };
    let mut out = material.clone();
    let mut action = CertAction::Loaded;
    match material.ca(NEXT_CERT, NEXT_KEY, now) {
        Some(next) if now >= staged_at(&next) + CA_OVERLAP => {
            out.set(PREVIOUS_CERT, ca.pem.clone());
            out.set(CA_CERT, next.pem.clone());
            out.set(CA_KEY, next.key.serialize_pem());
            out.remove(NEXT_CERT);
            out.remove(NEXT_KEY);
            ca = next;
            action = CertAction::RotatedCa;
        }
        Some(_) => {}
        None => {
            out.remove(NEXT_CERT);
            out.remove(NEXT_KEY);
            if needs_renewal(ca.not_before, ca.not_after, now) {
                let (pem, key) = generate_ca(now)?;
                out.set(NEXT_CERT, pem);
                out.set(NEXT_KEY, key.serialize_pem());
                action = CertAction::StagedCa;
            }
        }
    }
    // The previous CA is published until the current one has signed for CA_OVERLAP.
    let previous_expired = out
        .get(PREVIOUS_CERT)
        .and_then(validity_of)
        .is_none_or(|(_, not_after)| now >= not_after);
    if previous_expired || now >= staged_at(&ca) + CA_OVERLAP * 2 {
        out.remove(PREVIOUS_CERT);
    }
    if action == CertAction::RotatedCa || !serving_is_current(&out, &ca, names, now) {
        let (cert_pem, key_pem) = issue_serving(&ca.pem, &ca.key, names, now)?;
        out.set(TLS_CERT, cert_pem);
        out.set(TLS_KEY, key_pem);
        if action == CertAction::Loaded {
            action = CertAction::RenewedServing;
        }
    }
    Ok((out, action))
}

/// Makes sure `dir` holds valid material for `namespace` at `now`, generating, renewing or
/// rotating what is due, and writes back what changed.
pub fn ensure(dir: &Path, namespace: &str, now: SystemTime) -> Result<(CertBundle, CertAction)> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let mut current = Material::default();
    for name in entry::ALL {
        if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
            current.set(name, text);
        }
    }
    let (next, action) = plan(&current, &serving_names(namespace), now)?;
    // Keys first, and the serving pair last, so a crash in between leaves a CA whose key is
    // on disk; the next start re-plans from whatever is there.
    let mut names: Vec<&String> = next.0.keys().collect();
    names.sort_by_key(|n| (!entry::is_key(n), n.starts_with("tls")));
    for name in names {
        if current.get(name) != next.get(name) {
            let mode = if entry::is_key(name) { 0o600 } else { 0o644 };
            write_atomic(&dir.join(name), next.0[name].as_bytes(), mode)?;
        }
    }
    for name in current.0.keys().filter(|n| !next.0.contains_key(*n)) {
        std::fs::remove_file(dir.join(name)).map_err(|source| io(&dir.join(name), source))?;
    }
    Ok((next.bundle()?, action))
}

/// Generates a self-signed CA valid from `now` (less a little skew) for [`CA_VALIDITY`].
pub fn generate_ca(now: SystemTime) -> Result<(String, KeyPair)> {
    let key = KeyPair::generate()?;
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
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + CA_VALIDITY).into();
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// Issues a serving certificate for `names` signed by the CA, valid for [`SERVING_VALIDITY`];
/// returns the certificate and key PEM.
pub fn issue_serving(
    ca_pem: &str,
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
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The validity period (`notBefore`, `notAfter`) of a PEM certificate.
pub fn validity_of(pem: &str) -> Option<(SystemTime, SystemTime)> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let time = |t: x509_parser::time::ASN1Time| {
        Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).ok()?))
    };
    Some((
        time(cert.validity().not_before)?,
        time(cert.validity().not_after)?,
    ))
}

// === impl Material ===

impl Material {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: &str, pem: String) {
        self.0.insert(name.to_string(), pem);
    }

    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// What servers and clients use: the serving pair and every CA to trust.
    pub fn bundle(&self) -> Result<CertBundle> {
        let missing = |name: &str| Error::InvalidCertificate {
            path: name.into(),
            message: "missing".to_string(),
        };
        let get = |name: &'static str| self.get(name).ok_or_else(|| missing(name));
        let ca_pem = [entry::CA_CERT, entry::NEXT_CERT, entry::PREVIOUS_CERT]
            .into_iter()
            .filter_map(|name| self.get(name))
            .map(|pem| pem.trim_end().to_string() + "\n")
            .collect();
        Ok(CertBundle {
            ca_pem,
            cert_pem: get(entry::TLS_CERT)?.to_string(),
            key_pem: get(entry::TLS_KEY)?.to_string(),
        })
    }

    /// The CA stored under `cert`/`key`, if both parse, match and it is valid at `now`.
    fn ca(&self, cert: &str, key: &str, now: SystemTime) -> Option<Ca> {
        let pem = self.get(cert)?.to_string();
        let key = KeyPair::from_pem(self.get(key)?).ok()?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).ok()?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return None;
        }
        let key_id = parsed
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
        let (not_before, not_after) = validity_of(&pem)?;
        (not_before <= now && now < not_after).then_some(Ca {
            pem,
            key,
            not_before,
            not_after,
            key_id,
        })
    }
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

// === impl CertBundle ===

impl CertBundle {
    /// A rustls server configuration serving this certificate, with HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        Ok(server_config(Arc::new(ServingCert::new(self)?)))
    }

    /// The serving certificate and key, ready for rustls.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>> {
        let bad = |message: String| Error::InvalidCertificate {
            path: entry::TLS_CERT.into(),
            message,
        };
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(certs, key, &provider)?;
        Ok(Arc::new(certified))
    }

    /// The CA certificates in DER, for clients that build their own trust store.
    pub fn ca_ders(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.ca_pem.as_bytes())
            .filter_map(std::result::Result::ok)
            .collect()
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

// === impl ServingCert ===

impl ServingCert {
    pub fn new(bundle: &CertBundle) -> Result<Self> {
        Ok(Self(ArcSwap::new(bundle.certified_key()?)))
    }

    /// Serves `bundle` to connections accepted from now on.
    pub fn replace(&self, bundle: &CertBundle) -> Result<()> {
        self.0.store(bundle.certified_key()?);
        Ok(())
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// A rustls server configuration with HTTP/2 and HTTP/1.1 whose certificate comes from `cert`.
pub fn server_config(cert: Arc<ServingCert>) -> Arc<rustls::ServerConfig> {
    // An explicit provider, so nothing depends on a process-wide default being installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

// === helpers ===

/// When a CA was made: certificates are backdated by [`BACKDATE`].
fn staged_at(ca: &Ca) -> SystemTime {
    ca.not_before + BACKDATE
}

/// Whether the stored serving certificate parses, matches its key, was issued by `ca`, covers
/// `names` and is not due for renewal.
fn serving_is_current(material: &Material, ca: &Ca, names: &[String], now: SystemTime) -> bool {
    let Ok(bundle) = material.bundle() else {
        return false;
    };
    // Refuses a key that does not match the certificate (a crash between two writes).
    if bundle.certified_key().is_err() {
        return false;
    }
    let Ok(der) = CertificateDer::from_pem_slice(bundle.cert_pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let mut sans = Vec::new();
    let mut issuer_id = None;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(dns) => sans.push((*dns).to_string()),
                        GeneralName::IPAddress(ip) => {
                            if let Ok(octets) = <[u8; 4]>::try_from(*ip) {
                                sans.push(std::net::Ipv4Addr::from(octets).to_string());
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                issuer_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    let issued_by_ca = match (&issuer_id, &ca.key_id) {
        (Some(issuer), Some(ca)) => issuer == ca,
        _ => true,
    };
    let Some((not_before, not_after)) = validity_of(&bundle.cert_pem) else {
        return false;
    };
    issued_by_ca
        && names.iter().all(|n| sans.contains(n))
        && !needs_renewal(not_before, not_after, now)
}

/// Writes through a temporary file in the same directory, renamed over `path` once synced (the
/// directory too), so a reader never sees half a file, nor a crash an empty one; the mode is set
/// at creation, and never copied from the file replaced, so a key is never world-readable.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use atomic_write_file::unix::OpenOptionsExt as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let mut file = atomic_write_file::OpenOptions::new()
        .mode(mode)
        .preserve_mode(false)
        .preserve_owner(false)
        .open(path)
        .map_err(|source| io(path, source))?;
    file.write_all(contents)
        .and_then(|()| file.commit())
        .map_err(|source| io(path, source))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
