//! placeholder
pub async fn run(_args: crate::args::DemoArgs) -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
