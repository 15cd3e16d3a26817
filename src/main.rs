//! The `murmur` binary: parse the command line, start a node, run the
//! terminal front end until `/quit`, Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use murmur::api::Api;
use murmur::cli::{Cli, Subcommand};
use murmur::console::{run_stdin, Printer};
use murmur::{Event, Node};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,murmur=info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("murmur: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Subcommand::Bench(args)) = cli.command {
        let report = murmur::bench::run(args).await?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if let Some(Subcommand::Doctor { seconds }) = cli.command {
        let report = murmur::doctor::run(std::time::Duration::from_secs(seconds))
            .await
            .map_err(anyhow::Error::msg)?;
        if cli.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.to_human());
        }
        return Ok(());
    }
    let config = cli.config().map_err(anyhow::Error::msg)?;
    tracing::info!(name = %config.name, data_dir = %config.data_dir.display(), "starting");
    let (node, events, task) = Node::start_with_events(config).await?;
    let quit = CancellationToken::new();
    let printer = Printer::spawn(cli.json, events);
    let stop_api = CancellationToken::new();
    let api_task = match start_servers(&node, &cli, &stop_api).await {
        Ok(api_task) => api_task,
        Err(e) => {
            stop_api.cancel();
            node.shutdown().await;
            task.await?;
            return Err(e);
        }
    };
    tokio::spawn(run_stdin(node.clone(), printer, quit.clone()));
    tokio::select! {
        () = quit.cancelled() => {}
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm() => {}
    }
    tracing::info!("shutting down");
    stop_api.cancel();
    if let Some(api) = api_task {
        if let Err(e) = api.await? {
            tracing::warn!("api: {e}");
        }
    }
    node.shutdown().await;
    task.await?;
    Ok(())
}

/// Starts the HTTP API and the metrics endpoint when asked for; both stop with
/// `stop`. Returns the API's task, to be awaited at shutdown.
async fn start_servers(
    node: &Node,
    cli: &Cli,
    stop: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let mut api_task = None;
    if let Some(addr) = cli.api {
        let api = Api::bind(node.clone(), addr, cli.api_token.clone()).await?;
        node.emit(Event::ApiListening {
            addr: format!("http://{}", api.local_addr()),
        });
        api_task = Some(tokio::spawn(api.serve(stop.clone())));
    }
    if let Some(addr) = cli.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics {addr}"))?;
        node.emit(Event::MetricsListening {
            addr: format!("http://{}/metrics", listener.local_addr()?),
        });
        tokio::spawn(murmur::metrics::serve(listener, node.registry(), stop.clone()));
    }
    Ok(api_task)
}

#[cfg(unix)]
async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn sigterm() {
    std::future::pending().await
}
