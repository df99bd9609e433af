use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchyard-certs-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn at(days: u64) -> SystemTime {
    // 2026-01-01T00:00:00Z plus `days`.
    UNIX_EPOCH + Duration::from_secs(1_767_225_600) + DAY * u32::try_from(days).unwrap()
}

#[test]
fn renewal_is_due_at_two_thirds_of_the_life() {
    let (start, end) = (at(0), at(300));
    assert!(!needs_renewal(start, end, at(0)));
    assert!(!needs_renewal(start, end, at(199)));
    assert!(needs_renewal(start, end, at(200)));
    assert!(needs_renewal(start, end, at(301)));
    assert!(needs_renewal(at(10), end, at(5)), "not valid yet");
    assert!(needs_renewal(end, start, at(1)), "inverted period");
}

#[test]
fn generated_certificates_carry_the_requested_validity() {
    let (ca_pem, ca_key) = generate_ca(at(0)).unwrap();
    assert_eq!(
        validity_of(&ca_pem),
        Some((at(0) - BACKDATE, at(0) + CA_VALIDITY))
    );
    let (cert_pem, _) = issue_serving(&ca_pem, &ca_key, &serving_names("ops"), at(1)).unwrap();
    assert_eq!(
        validity_of(&cert_pem),
        Some((at(1) - BACKDATE, at(1) + SERVING_VALIDITY))
    );
    assert_eq!(validity_of("garbage"), None);
}

/// Two thirds of the CA's life (10 years) have passed at day 2434.
const STAGE_DAY: u64 = 2440;

#[test]
fn the_ca_is_staged_then_rotated_then_the_previous_one_retires() {
    let names = serving_names("ops");
    let (m0, action) = plan(&Material::default(), &names, at(0)).unwrap();
    assert_eq!(action, CertAction::Generated);
    let original_ca = m0.get(entry::CA_CERT).unwrap().to_string();

    // Before two thirds of the CA's life only the serving certificate moves.
    let (m1, action) = plan(&m0, &names, at(STAGE_DAY - 140)).unwrap();
    assert_eq!(action, CertAction::RenewedServing);
    assert_eq!(m1.get(entry::CA_CERT), Some(original_ca.as_str()));

    // At two thirds a next CA joins the bundle; the old one still signs.
    let (m2, action) = plan(&m1, &names, at(STAGE_DAY)).unwrap();
    assert_eq!(action, CertAction::StagedCa);
    let next_ca = m2.get(entry::NEXT_CERT).unwrap().to_string();
    assert_eq!(m2.get(entry::TLS_CERT), m1.get(entry::TLS_CERT));
    let bundle = m2.bundle().unwrap();
    assert!(bundle.ca_pem.contains(original_ca.trim()) && bundle.ca_pem.contains(next_ca.trim()));
    assert_eq!(bundle.ca_ders().len(), 2);

    // Within the overlap nothing changes.
    let (m3, action) = plan(&m2, &names, at(STAGE_DAY) + CA_OVERLAP / 2).unwrap();
    assert_eq!((action, &m3), (CertAction::Loaded, &m2));

    // After it the next CA signs, and the old one is still trusted for a while.
    let (m4, action) = plan(&m3, &names, at(STAGE_DAY) + CA_OVERLAP + DAY / 24).unwrap();
    assert_eq!(action, CertAction::RotatedCa);
    assert_eq!(m4.get(entry::CA_CERT), Some(next_ca.as_str()));
    assert_eq!(m4.get(entry::PREVIOUS_CERT), Some(original_ca.as_str()));
    assert_ne!(m4.get(entry::TLS_CERT), m3.get(entry::TLS_CERT));
    let ca = m4
        .ca(
            entry::CA_CERT,
            entry::CA_KEY,
            at(STAGE_DAY) + CA_OVERLAP * 2,
        )
        .unwrap();
    assert!(serving_is_current(
        &m4,
        &ca,
        &names,
        at(STAGE_DAY) + CA_OVERLAP * 2
    ));
    let old = m0.ca(entry::CA_CERT, entry::CA_KEY, at(1)).unwrap();
    assert!(
        !serving_is_current(&m4, &old, &names, at(STAGE_DAY) + CA_OVERLAP * 2),
        "issued by the new CA"
    );

    let (m5, _) = plan(&m4, &names, at(STAGE_DAY) + CA_OVERLAP * 3).unwrap();
    assert_eq!(
        m5.get(entry::PREVIOUS_CERT),
        None,
        "the previous CA retires"
    );
    assert_eq!(m5.bundle().unwrap().ca_ders().len(), 1);
}

#[test]
fn a_ca_whose_key_does_not_match_is_replaced() {
    let names = serving_names("ops");
    let (a, _) = plan(&Material::default(), &names, at(0)).unwrap();
    let (b, _) = plan(&Material::default(), &names, at(0)).unwrap();
    let mut mixed = a.clone();
    mixed.set(entry::CA_KEY, b.get(entry::CA_KEY).unwrap().to_string());
    let (_, action) = plan(&mixed, &names, at(1)).unwrap();
    assert_eq!(action, CertAction::Generated);
}

#[test]
fn a_replaced_serving_certificate_is_served_to_new_connections() {
    let names = serving_names("ops");
    let (m0, _) = plan(&Material::default(), &names, at(0)).unwrap();
    let first = m0.bundle().unwrap();
    let serving = ServingCert::new(&first).unwrap();
    let (m1, _) = plan(&m0, &names, at(250)).unwrap();
    let second = m1.bundle().unwrap();
    let before = serving.0.load_full();
    serving.replace(&second).unwrap();
    let after = serving.0.load_full();
    assert_ne!(before.cert, after.cert);
    assert_eq!(after.cert, second.certified_key().unwrap().cert);
}

#[test]
fn serving_names_cover_both_services_and_loopback() {
    let names = serving_names("ops");
    for name in [
        "switchyard-config.ops.svc",
        "switchyard-config.ops.svc.cluster.local",
        "switchyard-webhook.ops.svc",
        "switchyard-webhook.ops.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ] {
        assert!(names.contains(&name.to_string()), "{name}");
    }
}

#[test]
fn ensure_generates_then_loads_then_renews() {
    let dir = scratch_dir();
    let (first, action) = ensure(&dir, "ops", at(0)).unwrap();
    assert_eq!(action, CertAction::Generated);
    for (file, mode) in [("ca.key", 0o600), ("tls.key", 0o600), ("tls.crt", 0o644)] {
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    first.server_config().expect("a usable server config");

    let (again, action) = ensure(&dir, "ops", at(100)).unwrap();
    assert_eq!(action, CertAction::Loaded);
    assert_eq!(again.cert_pem, first.cert_pem);

    let (renewed, action) = ensure(&dir, "ops", at(250)).unwrap();
    assert_eq!(action, CertAction::RenewedServing);
    assert_eq!(renewed.ca_pem, first.ca_pem, "the CA survives a renewal");
    assert_ne!(renewed.cert_pem, first.cert_pem);

    let (_, action) = ensure(&dir, "other-ns", at(251)).unwrap();
    assert_eq!(
        action,
        CertAction::RenewedServing,
        "new Service names need a new certificate"
    );

    std::fs::write(dir.join("ca.crt"), "garbage").unwrap();
    let (regenerated, action) = ensure(&dir, "ops", at(252)).unwrap();
    assert_eq!(action, CertAction::Generated);
    assert_ne!(regenerated.ca_pem, first.ca_pem);
    assert!(!format!("{regenerated:?}").contains("PRIVATE KEY"));
    std::fs::remove_dir_all(dir).unwrap();
}
