//! `switchyard-operator`. For now it only prints the CRD manifests (`crds`); the controller,
//! config server and webhook follow in their own issues.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Switchyard operator")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CRD manifests, or write them as files into `--out-dir`.
    Crds {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Crds { out_dir: None } => {
            for (_, yaml) in switchyard_crds::v1alpha1::crd_manifests() {
                print!("---\n{yaml}");
            }
        }
        Command::Crds { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for (file, yaml) in switchyard_crds::v1alpha1::crd_manifests() {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
    }
    Ok(())
}
