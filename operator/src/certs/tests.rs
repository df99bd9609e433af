use std::os::unix::fs::PermissionsExt;
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
fn der_dates_round_trip_through_both_time_encodings() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    let utc = der_time(0x17, b"260101000000Z").unwrap();
    let generalized = der_time(0x18, b"20260101000000Z").unwrap();
    assert_eq!(utc, at(0));
    assert_eq!(generalized, at(0));
    assert_eq!(der_time(0x18, b"2060"), None);
    assert_eq!(
        der_time(0x17, b"991231235959Z"),
        Some(UNIX_EPOCH + Duration::from_secs(946_684_799))
    );
}

#[test]
fn generated_certificates_carry_the_requested_validity() {
    let (ca_pem, ca_key) = generate_ca(at(0)).unwrap();
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
    assert_eq!(
        validity(&ca_der),
        Some((at(0) - BACKDATE, at(0) + CA_VALIDITY))
    );

    let (cert_pem, _) = issue_serving(&ca_key, &serving_names("ops"), at(1)).unwrap();
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    assert_eq!(
        validity(&der),
        Some((at(1) - BACKDATE, at(1) + SERVING_VALIDITY))
    );
    assert_eq!(
        validity(b"\x30\x03\x02\x01"),
        None,
        "truncated DER is refused"
    );
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
