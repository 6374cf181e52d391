//! `jobwatch`: events, containers and status from a jobwatch sensor or collector, and the
//! collector's alerts.

mod args;
mod collector;
mod commands;
mod compact;
mod connect;
mod error;
mod json;
mod names;
mod table;
mod time;

#[cfg(test)]
mod render_tests;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => error::report(&e),
    }
}
