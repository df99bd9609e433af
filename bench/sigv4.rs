//! What signing costs a Bedrock request (issue 14): `bedrock::sign_request`, the SigV4 signature
//! every Converse call carries (a SHA-256 of the body, a canonical request, four HMACs), timed
//! for request bodies of 1, 8 and 64 KiB, with and without a session token. Each case is timed
//! over many calls: p50 / p99 / max. Vertex AI's JWT grant is not here: it is signed once per
//! token (about an hour), not per request.
//!
//! ```sh
//! cargo bench -p switchyard-sidecar --bench sigv4
//! SIGV4_BENCH_ITERS=50000 cargo bench -p switchyard-sidecar --bench sigv4
//! ```

// Wall-clock timing of a synchronous function: no runtime to pause.
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use switchyard_crds::secret::SecretString;
use switchyard_sidecar::providers::bedrock::sign_request;
use switchyard_sidecar::upstream::credentials::AwsCredentials;

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:>7.2} µs  p99 {:>7.2} µs  max {:>8.2} µs",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6
    )
}

fn request(body_len: usize) -> (http::Request<()>, Vec<u8>) {
    let request = http::Request::post(
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream",
    )
    .header("content-type", "application/json")
    .header("accept", "application/vnd.amazon.eventstream")
    .body(())
    .expect("a request");
    (request, vec![b'x'; body_len])
}

fn main() {
    let iters: usize = std::env::var("SIGV4_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let keys = |token: Option<&str>| AwsCredentials {
        access_key_id: SecretString::new("AKIDEXAMPLE"),
        secret_access_key: SecretString::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        session_token: token.map(SecretString::new),
    };
    println!("SigV4 signing of one Bedrock request, {iters} calls per case after a warm-up");
    for (label, keys) in [
        ("static keys", keys(None)),
        (
            "STS keys (session token)",
            keys(Some("FwoGZXIvYXdzEXAMPLE")),
        ),
    ] {
        for body_len in [1024, 8 * 1024, 64 * 1024] {
            let sign = || {
                let (mut request, body) = request(body_len);
                sign_request(
                    &mut request,
                    &body,
                    &keys,
                    ("us-east-1", "bedrock"),
                    SystemTime::now(),
                )
                .expect("signs");
                black_box(request);
            };
            for _ in 0..iters / 10 {
                sign();
            }
            let samples = (0..iters)
                .map(|_| {
                    let started = Instant::now();
                    sign();
                    started.elapsed()
                })
                .collect();
            println!(
                "  {label:<26} body {:>3} KiB  {}",
                body_len / 1024,
                percentiles(samples)
            );
        }
    }
}
