//! The program behind the `murmur` binary: parse the command line, start
//! tracing, run a subcommand or start a node and the terminal front end
//! until `/quit`, Ctrl-C or SIGTERM. It lives in the library so that the
//! generic code it uses (tokio's runtime, tracing's subscriber, clap) is
//! compiled once, with the library, not again for the binary.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::api::Api;
use crate::cli::{Cli, Subcommand};
use crate::console::{run_stdin, Printer};
use crate::{Event, Node};
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Runs the `murmur` command line to its end and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,murmur=info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("murmur: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // `run` has stopped the node and closed the inbox. What may still run
    // is stdin's reader, blocked in a read until a line or EOF comes:
    // dropping the runtime would wait for it, so Ctrl-C or SIGTERM with
    // stdin open (a terminal, a pipe kept open) would not end the process.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`murmur man | head`): nothing left to say.
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == Some(std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("murmur: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Subcommand::Completions { shell }) => {
            crate::manual::completions(*shell, &mut std::io::stdout())?;
            return Ok(());
        }
        Some(Subcommand::Man) => {
            crate::manual::man_page(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    if let Some(Subcommand::Bench(args)) = cli.command {
        let report = crate::bench::run(args).await?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if let Some(Subcommand::Doctor {
        seconds,
        bootstrap,
        private_wan,
        wan_seconds,
    }) = &cli.command
    {
        let mut addrs = Vec::new();
        for value in bootstrap {
            addrs.extend(crate::config::parse_bootstrap(value).map_err(anyhow::Error::msg)?);
        }
        let secs = std::time::Duration::from_secs;
        let report = crate::doctor::run(secs(*seconds), addrs, *private_wan, secs(*wan_seconds))
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
    // Refused before the node starts, not after it has printed its addresses.
    if let Some(addr) = cli.api {
        crate::api::check_exposure(addr, cli.api_token.as_deref())?;
    }
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
        tokio::spawn(crate::metrics::serve(listener, node.registry(), stop.clone()));
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
