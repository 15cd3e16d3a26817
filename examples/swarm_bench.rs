//! The swarm benchmark, as an example: the same harness and options as
//! `murmur bench`. The last line of stdout is one JSON object.
//!
//! Run with: `cargo run --release --example swarm_bench -- --nodes 20 --messages 200`
//! (`--procs` also needs the binary: `cargo build --release` first).

use clap::Parser;

/// murmur swarm benchmark (see docs/performance.md).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    bench: murmur::bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let report = murmur::bench::run(args.bench).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
