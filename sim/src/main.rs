//! `switchyard-sim`: one simulated provider of each API on free loopback ports, for tests that
//! drive the real sidecar binary from outside (the Python SDK suite). Prints the base URLs, and
//! what the simulated clouds accept (Bedrock's region and static keys, Vertex's project and a
//! service account key file for its token endpoint), as one JSON line on stdout, then serves until
//! it is killed or its stdin closes.

use switchyard_sim::{anthropic, azure, bedrock, gemini, openai, vertex};
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let openai = openai::MockProvider::start("openai").await?;
    let anthropic = anthropic::MockProvider::start("anthropic").await?;
    let gemini = gemini::MockProvider::start("gemini").await?;
    let azure = azure::MockProvider::start("azure").await?;
    let bedrock = bedrock::MockProvider::start("bedrock").await?;
    let vertex = vertex::MockProvider::start("vertex").await?;
    let tokens = vertex::TokenServer::start().await?;
    let urls = serde_json::json!({
        "openai": openai.base_url(),
        "anthropic": anthropic.base_url(),
        "gemini": gemini.base_url(),
        "azure": azure.base_url(),
        "azure_resource": azure.resource_url(),
        "bedrock": bedrock.base_url(),
        "bedrock_region": bedrock::REGION,
        "bedrock_access_key_id": bedrock::ACCESS_KEY_ID,
        "bedrock_secret_access_key": bedrock::SECRET_ACCESS_KEY,
        "vertex": vertex.base_url(),
        "vertex_project": vertex::PROJECT,
        "vertex_key_file": tokens.key_file(),
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
