//! `switchyard-sim`: one simulated provider of each API on free loopback ports, for tests that
//! drive the real sidecar binary from outside (the Python SDK suite). Prints the base URLs as one
//! JSON line on stdout, then serves until it is killed or its stdin closes.

use switchyard_sim::{anthropic, azure, gemini, openai};
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let openai = openai::MockProvider::start("openai").await?;
    let anthropic = anthropic::MockProvider::start("anthropic").await?;
    let gemini = gemini::MockProvider::start("gemini").await?;
    let azure = azure::MockProvider::start("azure").await?;
    let urls = serde_json::json!({
        "openai": openai.base_url(),
        "anthropic": anthropic.base_url(),
        "gemini": gemini.base_url(),
        "azure": azure.base_url(),
        "azure_resource": azure.resource_url(),
    });
    println!("{urls}");
    // Serve until the parent goes away: EOF on stdin, or a signal.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    tokio::select! {
        _ = async { while stdin.read(&mut sink).await.is_ok_and(|n| n > 0) {} } => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
