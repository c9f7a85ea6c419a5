//! `postern-bench`: see `tests/src/bench/mod.rs` and BENCHMARKS.md.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use postern_tests::bench::cli::{Cli, Command};
use postern_tests::bench::report::markdown;
use postern_tests::bench::scenario;
use postern_tests::bench::sink::{self, Counters, Offers, SinkConfig};
use postern_tests::bench::tls;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("postern-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("postern-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Scenario { scenario, common } => {
            let report = scenario::run(&scenario, &common).await?;
            println!("{}", report.text());
            write_json(common.json.as_deref(), &report)?;
            match report.lost_or_refused() {
                None => Ok(()),
                Some(what) => anyhow::bail!(
                    "messages were lost or refused ({what}); the table above is not valid"
                ),
            }
        }
        Command::Suite { quick, common } => {
            let reports = scenario::suite(quick, &common).await;
            println!("{}", markdown(&reports));
            write_json(common.json.as_deref(), &reports)
        }
        Command::ServeSink {
            listen,
            xclient,
            tls_pem,
        } => serve_sink(listen, xclient, tls_pem.as_deref()).await,
    }
}

fn write_json<T: serde::Serialize + ?Sized>(
    path: Option<&std::path::Path>,
    value: &T,
) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The sink process: serves until its standard input closes (the bench
/// exited or dropped it) or it is signalled.
async fn serve_sink(
    listen: std::net::SocketAddr,
    xclient: bool,
    tls_pem: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let acceptor = tls_pem.map(tls::acceptor).transpose()?;
    let config = Arc::new(SinkConfig {
        offers: Offers {
            xclient,
            starttls: acceptor.is_some(),
        },
        tls: acceptor,
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = std::io::sink();
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut sink);
    });
    tokio::select! {
        () = sink::serve(listener, config, Arc::new(Counters::default())) => {}
        _ = stdin_closed => {}
    }
    Ok(())
}
