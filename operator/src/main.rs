//! `switchyard-operator`: serves by default; `crds` prints the CRD manifests. Flags are read and
//! validated here, once (STYLE 13); everything else lives in the library.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use anyhow::Context as _;
use clap::Parser as _;
use switchyard_operator::admin::{self, AdminState};
use switchyard_operator::args::{Args, Command, Config};
use switchyard_operator::config_server::{self, ConfigServer, tables::Tables};
use switchyard_operator::controller;
use switchyard_operator::{certs, metrics::Metrics};
use tokio::net::TcpListener;

/// `EX_USAGE` from sysexits.h: the flags were wrong.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage(e.to_string().lines().next().unwrap_or("invalid arguments")),
    };
    if let Some(Command::Crds { out_dir }) = &args.command {
        return report(print_crds(out_dir.as_deref()));
    }
    let config = match args.into_config(std::env::var("POD_NAMESPACE").ok()) {
        Ok(config) => config,
        Err(e) => return usage(&e.to_string()),
    };
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    report(
        runtime
            .context("cannot start the runtime")
            .and_then(|rt| rt.block_on(serve(config))),
    )
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "switchyard-operator: {}",
        message.trim_start_matches("error: ")
    );
    ExitCode::from(EX_USAGE)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_crds(out_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let manifests = switchyard_crds::v1alpha1::crd_manifests();
    match out_dir {
        None => {
            for (_, yaml) in manifests {
                print!("---\n{yaml}");
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (file, yaml) in manifests {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // NB: kube and our servers both use rustls with ring; installing it as the process default
    // keeps any code path that asks for the default from panicking.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let (bundle, action) = certs::ensure(&config.cert_dir, &config.namespace, SystemTime::now())?;
    tracing::info!(?action, dir = %config.cert_dir.display(), "certificates ready");
    let tls = bundle.server_config()?;

    let client = match kube::Client::try_default().await {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::warn!(%error, "no Kubernetes configuration: config requests will be answered 503");
            None
        }
    };
    let metrics = Metrics::new()?;
    // The controller fills `tables` from its reflectors; without a client they stay empty and
    // the config server answers 503 anyway.
    let tables = Tables::default();
    let server = ConfigServer::new(tables.clone(), client.clone(), metrics.config.clone());
    if let Some(client) = client {
        let reports = server.clone();
        tokio::spawn(controller::run(
            client,
            tables,
            move || controller::Reports {
                windows: reports.report_windows(),
                versions: reports.report_versions(),
            },
            metrics.controller.errors.clone(),
        ));
    }

    let config_listener = bind(config.config_listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    // TODO(operator): the injection webhook on `config.webhook_listen`.
    let ready = Arc::new(AtomicBool::new(false));
    let admin = AdminState {
        metrics,
        ready: ready.clone(),
    };
    tracing::info!(config = %config.config_listen, admin = %config.admin_listen, namespace = %config.namespace, "serving");
    ready.store(true, Ordering::Release);

    tokio::select! {
        result = config_server::serve(config_listener, tls, server) => result?,
        result = admin::serve(admin_listener, admin) => result?,
        () = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| switchyard_operator::Error::Bind { addr, source }.into())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
