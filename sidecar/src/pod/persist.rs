//! The last known good route table on disk, so that a pod serves at once after a container
//! restart and while the operator is unreachable.
//!
//! `<state-dir>/route-table.json` holds `{"schemaVersion": N, "checksum": "<sha256 hex of the
//! table's JSON>", "table": <RouteTable>}`. It carries provider keys, so it is written with mode
//! 0600 (atomically, with `atomic-write-file`: temp file, fsync, rename, directory fsync) and its
//! contents never reach a log or an error.
//! A file whose schema or checksum does not match is ignored, never half-trusted.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use atomic_write_file::unix::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use switchyard_crds::table::{RouteTable, SCHEMA_VERSION};

use crate::Error;

/// The file's name inside `--state-dir`.
pub const FILE_NAME: &str = "route-table.json";

/// The file as read back; the table's bytes are re-serialized to check the checksum.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    schema_version: u32,
    checksum: String,
    table: RouteTable,
}

/// Where the table lives in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

fn checksum(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `table` as the last known good one.
pub fn save(state_dir: &Path, table: &RouteTable) -> crate::Result<()> {
    let target = path(state_dir);
    let fail = |source| Error::StateWrite {
        path: target.clone(),
        source,
    };
    fs::create_dir_all(state_dir).map_err(fail)?;
    let table_json = serde_json::to_vec(table).expect("a route table always serializes");
    // Written by hand so that the embedded bytes are exactly the ones the checksum covers.
    let mut body = Vec::with_capacity(table_json.len() + 128);
    body.extend_from_slice(
        format!(
            "{{\"schemaVersion\":{SCHEMA_VERSION},\"checksum\":\"{}\",\"table\":",
            checksum(&table_json)
        )
        .as_bytes(),
    );
    body.extend_from_slice(&table_json);
    body.extend_from_slice(b"}\n");

    // A reader sees the old file or the new one, never part of one; the file is synced, and so
    // is the directory after the rename.
    let mut options = atomic_write_file::OpenOptions::new();
    options.preserve_mode(false).mode(0o600);
    let written = options.open(&target).and_then(|mut file| {
        file.write_all(&body)?;
        file.commit()
    });
    written.map_err(fail)
}

/// The persisted table, if there is one and it is intact and of our schema.
pub fn load(state_dir: &Path) -> crate::Result<Option<RouteTable>> {
    let file = path(state_dir);
    let bytes = match fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(invalid(&file, format!("cannot read it: {e}"))),
    };
    // NB: serde's message can quote the input, which may be a key: name the position only.
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| {
        invalid(
            &file,
            format!(
                "not a stored route table (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    if stored.schema_version != SCHEMA_VERSION || stored.table.schema_version != SCHEMA_VERSION {
        return Err(invalid(
            &file,
            format!(
                "schema {} where this sidecar reads {SCHEMA_VERSION}",
                stored.schema_version
            ),
        ));
    }
    let table_json = serde_json::to_vec(&stored.table).expect("a route table always serializes");
    if checksum(&table_json) != stored.checksum {
        return Err(invalid(&file, "checksum mismatch".into()));
    }
    if stored.table.content_hash() != stored.table.version {
        return Err(invalid(
            &file,
            "the table's version is not its content hash".into(),
        ));
    }
    Ok(Some(stored.table))
}

fn invalid(path: &Path, reason: String) -> Error {
    Error::StateInvalid {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-persist-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn table() -> RouteTable {
        let upstream: switchyard_crds::table::Upstream =
            serde_json::from_value(serde_json::json!({
                "pool": "pool", "provider": "a", "api": "OpenAI", "baseUrl": "https://a.example/v1",
                "apiKey": "sk-very-secret",
                "timeouts": {"connect": 1000, "firstToken": 1000, "idle": 1000, "total": 1000},
                "breaker": {"consecutiveFailures": 3, "cooldownMs": 1000, "maxRetryAfterMs": 1000}
            }))
            .expect("an upstream");
        RouteTable::new(
            BTreeMap::new(),
            BTreeMap::from([("pool/a".to_string(), upstream)]),
            "test",
        )
    }

    #[test]
    fn round_trips_with_mode_0600() {
        let dir = temp_dir("round-trip");
        assert!(load(&dir).unwrap().is_none(), "no file yet");
        let table = table();
        save(&dir, &table).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(table.clone()));
        let mode = fs::metadata(path(&dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Saving again replaces the file and leaves no temp file behind.
        save(&dir, &table).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_corrupted_or_mismatched_files_without_showing_them() {
        let dir = temp_dir("refuse");
        save(&dir, &table()).unwrap();
        let good = fs::read_to_string(path(&dir)).unwrap();
        let cases = [
            (
                "tampered",
                good.replace("https://a.example", "https://b.example"),
            ),
            (
                "schema",
                good.replacen("\"schemaVersion\":1", "\"schemaVersion\":99", 1),
            ),
            ("truncated", good[..good.len() / 2].to_string()),
            ("garbage", "sk-very-secret".to_string()),
        ];
        for (name, text) in cases {
            fs::write(path(&dir), text).unwrap();
            let error = load(&dir).unwrap_err().to_string();
            assert!(error.contains("ignored"), "{name}: {error}");
            assert!(!error.contains("sk-very-secret"), "{name}: {error}");
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
