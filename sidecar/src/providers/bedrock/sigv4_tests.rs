//! Bedrock's signer against AWS's published SigV4 test suite (`sigv4-suite/README.md`).

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use switchyard_crds::secret::SecretString;

use super::sign_request;
use crate::upstream::credentials::AwsCredentials;

/// A `request.txt`: request line, headers, a blank line, the body.
fn parse_request(text: &str) -> (http::Request<()>, Vec<u8>) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let mut request_line = lines.next().expect("a request line").split(' ');
    let method = request_line.next().unwrap();
    let path = request_line.next().unwrap();
    let mut builder = http::Request::builder().method(method).uri(path);
    for line in lines {
        let (name, value) = line.split_once(':').expect("name:value");
        // The signer adds the date (and any session token) itself, from the context.
        if !name.eq_ignore_ascii_case("x-amz-date") {
            builder = builder.header(name, value);
        }
    }
    (builder.body(()).unwrap(), body.as_bytes().to_vec())
}

/// The value of `name` in a signed request's headers.
fn expected_header(signed: &str, name: &str) -> Option<String> {
    signed
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_string())
}

fn check(case: &Path) {
    let read = |file: &str| std::fs::read_to_string(case.join(file)).unwrap();
    let context: Value = serde_json::from_str(&read("context.json")).unwrap();
    let credentials = &context["credentials"];
    let keys = AwsCredentials {
        access_key_id: SecretString::new(credentials["access_key_id"].as_str().unwrap()),
        secret_access_key: SecretString::new(credentials["secret_access_key"].as_str().unwrap()),
        session_token: credentials["token"].as_str().map(SecretString::new),
    };
    // Every case of the suite is signed at this instant.
    assert_eq!(context["timestamp"], "2015-08-30T12:36:00Z");
    let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let (mut request, body) = parse_request(&read("request.txt"));
    let scope = (
        context["region"].as_str().unwrap(),
        context["service"].as_str().unwrap(),
    );
    sign_request(&mut request, &body, &keys, scope, time).unwrap();

    let signed = read("header-signed-request.txt");
    let name = case.file_name().unwrap().to_string_lossy();
    for header in ["authorization", "x-amz-date", "x-amz-security-token"] {
        let got = request.headers().get(header).map(|v| v.to_str().unwrap());
        assert_eq!(
            got,
            expected_header(&signed, header).as_deref(),
            "{name}: {header}"
        );
    }
}

#[test]
fn every_published_case_signs_as_aws_expects() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/providers/bedrock/sigv4-suite");
    let mut cases: Vec<_> = std::fs::read_dir(&suite)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "the suite is in place: {cases:?}");
    for case in cases {
        check(&case);
    }
}
