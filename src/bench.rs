//! `murmur bench` (and `examples/swarm_bench.rs`): a swarm benchmark. Starts
//! real nodes on loopback (mDNS off), each dialling `--degree` random earlier
//! nodes, subscribes all to one secret topic, lets node 0 publish, and prints
//! one JSON object as the last line of stdout. docs/performance.md has the figures.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::{Config, Event, Node};

mod catchup;
pub use catchup::CatchupReport;

/// The bench topic and its secret.
const TOPIC: &str = "bench";
const SECRET: &str = "bench-secret";

/// Options of `murmur bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Nodes in all: one publisher and N-1 subscribers
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// Messages to publish
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// Message body size in bytes
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Pause between publishes (0: as fast as the publisher can, each publish
    /// waiting for the previous one to be stored)
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    /// Publish rate in messages per second (overrides --interval-ms)
    #[arg(long)]
    pub rate: Option<f64>,
    /// Each node dials this many random earlier nodes
    #[arg(long, default_value_t = 2)]
    pub degree: usize,
    /// Each node is its own murmur process (as on a LAN of machines); the
    /// default runs all nodes in this process
    #[arg(long)]
    pub procs: bool,
    /// Baseline: same harness and topology, without encryption and inbox writes
    #[arg(long)]
    pub plain: bool,
    /// Star topology: every subscriber dials the publisher only (ignores --degree)
    #[arg(long)]
    pub star: bool,
    /// Seed of the topology
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Catch-up instead: one node holds --messages messages, a fresh node
    /// connects to it and catches up; reports the time and the bytes the
    /// exchange costs beyond the envelopes (in-process; ignores the other options)
    #[arg(long)]
    pub catchup: bool,
    /// The murmur binary for --procs [default: this executable, or target/<profile>/murmur]
    #[arg(long, hide = true)]
    pub murmur_bin: Option<PathBuf>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// Resident memory per node, KiB.
#[derive(Debug, Serialize)]
pub struct Rss {
    /// Average over nodes.
    pub avg: u64,
    /// Largest node.
    pub max: u64,
}

/// What a run reports: one JSON object.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// A swarm run.
    Swarm(Report),
    /// A catch-up run (`--catchup`).
    Catchup(CatchupReport),
}

/// The result line of a swarm run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Nodes in all.
    pub nodes: usize,
    /// Messages published.
    pub messages: usize,
    /// Body size.
    pub size: usize,
    /// Pause between publishes.
    pub interval_ms: f64,
    /// `"procs"` or `"inproc"`, with `"-plain"` for the baseline.
    pub mode: String,
    /// Unique messages received over messages × subscribers.
    pub delivery_ratio: f64,
    /// From the publish call to the receiver's application seeing the
    /// (decrypted, durably stored) message.
    pub latency_ms: Latency,
    /// Messages per second from the first publish to the last delivery.
    pub throughput_msgs_per_s: f64,
    /// Resident memory per node after the run.
    pub rss_kib: Rss,
    /// CPU time of all nodes over the run, per received message.
    pub cpu_us_per_msg: f64,
}

/// Who dials whom: node `i` dials up to `degree` distinct random nodes among `0..i`.
pub fn topology(nodes: usize, degree: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..nodes)
        .map(|i| {
            let mut earlier: Vec<usize> = (0..i).collect();
            earlier.shuffle(&mut rng);
            earlier.truncate(degree);
            earlier
        })
        .collect()
}

/// How many neighbours each node has in `topology` (dialled plus dialling it).
fn degrees(topology: &[Vec<usize>]) -> Vec<usize> {
    let mut degree = vec![0usize; topology.len()];
    for (i, dials) in topology.iter().enumerate() {
        degree[i] += dials.len();
        for &j in dials {
            degree[j] += 1;
        }
    }
    degree
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn body(i: usize, size: usize) -> String {
    let mut b = format!("m{i:08}-");
    while b.len() < size {
        b.push('x');
    }
    b.truncate(size.max(10));
    b
}

fn index_of(msg: &str) -> Option<usize> {
    msg.get(1..9)?.parse().ok()
}

/// CPU time (user + system) of a process, in microseconds (Linux).
fn cpu_us(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = stat.rsplit(')').next() else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000 / hz
}

/// Resident memory of a process in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The deliveries seen: (subscriber, message index) → when.
type Deliveries = Arc<Mutex<HashMap<(usize, usize), Instant>>>;

/// Runs the benchmark.
///
/// # Errors
/// When nodes cannot start or never connect.
pub async fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.nodes >= 2, "--nodes must be at least 2");
    anyhow::ensure!(args.size >= 10, "--size must be at least 10 bytes");
    anyhow::ensure!(
        args.size <= crate::envelope::MAX_MESSAGE_BYTES,
        "--size is over the message limit"
    );
    if args.catchup {
        return Ok(Outcome::Catchup(catchup::run(&args).await?));
    }
    let interval = match args.rate {
        Some(r) if r > 0.0 => Duration::from_secs_f64(1.0 / r),
        Some(_) => anyhow::bail!("--rate must be positive"),
        None => Duration::from_millis(args.interval_ms),
    };
    let dir = tempfile::Builder::new().prefix("murmur-bench-").tempdir()?;
    let topology = if args.star {
        (0..args.nodes).map(|i| if i == 0 { vec![] } else { vec![0] }).collect()
    } else {
        topology(args.nodes, args.degree, args.seed)
    };
    let report = if args.procs {
        run_procs(&args, interval, &topology, dir.path()).await?
    } else {
        run_inproc(&args, interval, &topology, dir.path()).await?
    };
    Ok(Outcome::Swarm(report))
}

struct Measured {
    publish_at: Vec<Instant>,
    deliveries: HashMap<(usize, usize), Instant>,
    cpu_us: u64,
    rss: Vec<u64>,
}

fn report(args: &BenchArgs, interval: Duration, mode: &str, m: Measured) -> Report {
    let subscribers = args.nodes - 1;
    let mut latencies: Vec<f64> = m
        .deliveries
        .iter()
        .filter_map(|((_, i), at)| {
            m.publish_at
                .get(*i)
                .map(|p| at.saturating_duration_since(*p).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let first = m.publish_at.first().copied();
    let last = m.deliveries.values().max().copied();
    let span = match (first, last) {
        (Some(f), Some(l)) => l.saturating_duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let received = m.deliveries.len();
    Report {
        nodes: args.nodes,
        messages: args.messages,
        size: args.size,
        interval_ms: interval.as_secs_f64() * 1000.0,
        mode: format!(
            "{mode}{}{}",
            if args.star { "-star" } else { "" },
            if args.plain { "-plain" } else { "" }
        ),
        delivery_ratio: received as f64 / (args.messages * subscribers) as f64,
        latency_ms: Latency {
            p50: percentile(&latencies, 50.0),
            p90: percentile(&latencies, 90.0),
            p99: percentile(&latencies, 99.0),
            max: latencies.last().copied().unwrap_or(0.0),
        },
        throughput_msgs_per_s: if span > 0.0 { args.messages as f64 / span } else { 0.0 },
        rss_kib: Rss {
            avg: m.rss.iter().sum::<u64>() / m.rss.len().max(1) as u64,
            max: m.rss.iter().copied().max().unwrap_or(0),
        },
        cpu_us_per_msg: m.cpu_us as f64 / received.max(1) as f64,
    }
}

/// Waits until message `next` is due (`t0 + next × interval`). Timers tick in
/// milliseconds, so at sub-millisecond intervals several messages go per tick
/// and the average rate still holds.
async fn pace(t0: Instant, interval: Duration, next: usize) {
    if interval.is_zero() {
        return;
    }
    let due = t0 + interval.mul_f64(next as f64);
    if due > Instant::now() + Duration::from_micros(500) {
        tokio::time::sleep_until(due.into()).await;
    }
}

/// How long to wait for the last deliveries after the last publish.
const DRAIN: Duration = Duration::from_secs(5);

/// Waits until `want` deliveries are in, or [`DRAIN`] has passed.
async fn wait_deliveries(deliveries: &Deliveries, want: usize) {
    let deadline = Instant::now() + DRAIN;
    while deliveries.lock().expect("lock").len() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node started in this process, with its events from the first one on.
struct Started {
    node: Node,
    /// Its listen address.
    addr: String,
    events: tokio::sync::broadcast::Receiver<std::sync::Arc<Event>>,
    /// When its first connection opened, if that came before its listen address.
    connected: Option<Instant>,
}

/// Starts a node in this process and waits for its listen address.
async fn start_inproc(config: Config) -> anyhow::Result<Started> {
    let (node, mut events, _task) = Node::start_with_events(config).await?;
    let mut connected = None;
    let addr = loop {
        match &*events.recv().await? {
            Event::Listening { addr } => break addr.clone(),
            Event::PeerConnected { .. } => connected = connected.or(Some(Instant::now())),
            _ => {}
        }
    };
    Ok(Started {
        node,
        addr,
        events,
        connected,
    })
}

async fn run_inproc(
    args: &BenchArgs,
    interval: Duration,
    topology: &[Vec<usize>],
    dir: &Path,
) -> anyhow::Result<Report> {
    let deliveries: Deliveries = Arc::default();
    let mut nodes = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    for (i, dials) in topology.iter().enumerate() {
        let mut config = Config::loopback(format!("n{i}"), dir.join(format!("n{i}")));
        config.plain = args.plain;
        config.topics.push((TOPIC.into(), Some(SECRET.into())));
        for &j in dials {
            config.peers.push(addrs[j].parse()?);
        }
        let Started {
            node, addr, mut events, ..
        } = start_inproc(config).await?;
        addrs.push(addr);
        if i > 0 {
            let deliveries = deliveries.clone();
            tokio::spawn(async move {
                while let Ok(event) = events.recv().await {
                    if let Event::Message { msg, .. } = &*event {
                        if let Some(idx) = index_of(msg) {
                            deliveries
                                .lock()
                                .expect("lock")
                                .entry((i, idx))
                                .or_insert_with(Instant::now);
                        }
                    }
                }
            });
        }
        nodes.push(node);
    }
    wait_connected_inproc(&nodes, topology).await?;
    let cpu_before = cpu_us(std::process::id());
    let t0 = Instant::now();
    let mut publish_at = Vec::with_capacity(args.messages);
    let mut in_flight = Vec::with_capacity(args.messages);
    for i in 0..args.messages {
        let started = Instant::now();
        publish_at.push(started);
        // Submitted in order without waiting for each commit (as the console
        // does), so that inbox writes share group commits; the queue to the
        // node bounds how far ahead the publisher runs.
        let pending = nodes[0].submit_publish(TOPIC, &body(i, args.size)).await?;
        in_flight.push(tokio::spawn(pending));
        pace(t0, interval, i + 1).await;
    }
    for publish in in_flight {
        publish.await??;
    }
    wait_deliveries(&deliveries, args.messages * (args.nodes - 1)).await;
    let cpu = cpu_us(std::process::id()) - cpu_before;
    let rss = vec![rss_kib(std::process::id()) / args.nodes as u64; args.nodes];
    for node in &nodes {
        node.shutdown().await;
    }
    let deliveries = deliveries.lock().expect("lock").clone();
    Ok(report(
        args,
        interval,
        "inproc",
        Measured {
            publish_at,
            deliveries,
            cpu_us: cpu,
            rss,
        },
    ))
}

/// Waits until every node knows each neighbour's subscription.
async fn wait_connected_inproc(nodes: &[Node], topology: &[Vec<usize>]) -> anyhow::Result<()> {
    let degree = degrees(topology);
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, node) in nodes.iter().enumerate() {
        loop {
            let peers = node.topic_peers().await?;
            if peers.subscribed.get(TOPIC).copied().unwrap_or(0) >= degree[i] {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {i} never saw its {} neighbours",
                degree[i]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Let the meshes settle (first heartbeats).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(())
}

fn murmur_bin(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    if let Some(b) = &args.murmur_bin {
        return Ok(b.clone());
    }
    let exe = std::env::current_exe()?;
    if exe.file_stem().is_some_and(|s| s == "murmur") {
        return Ok(exe);
    }
    // examples/swarm_bench → ../murmur
    let candidate = exe.parent().and_then(Path::parent).map(|d| d.join("murmur"));
    match candidate {
        Some(c) if c.exists() => Ok(c),
        _ => anyhow::bail!(
            "--procs needs the murmur binary: this executable is not named murmur and none is beside it; \
             build it (cargo build --release) or pass --murmur-bin PATH"
        ),
    }
}

struct Proc {
    child: Child,
    stdin: std::process::ChildStdin,
}

async fn run_procs(
    args: &BenchArgs,
    interval: Duration,
    topology: &[Vec<usize>],
    dir: &Path,
) -> anyhow::Result<Report> {
    let bin = murmur_bin(args)?;
    let deliveries: Deliveries = Arc::default();
    let ready: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(vec![0; topology.len()]));
    let mut procs: Vec<Proc> = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    for (i, dials) in topology.iter().enumerate() {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--json",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--name",
            &format!("n{i}"),
        ])
        .arg("--data-dir")
        .arg(dir.join(format!("n{i}")))
        .args(["--topic", &format!("{TOPIC}={SECRET}")])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if args.plain {
            cmd.arg("--bench-plain");
        }
        for &j in dials {
            cmd.args(["--peer", &addrs[j]]);
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let addr = loop {
            let line = lines.next().ok_or_else(|| anyhow::anyhow!("node {i} exited"))??;
            let event: Event = serde_json::from_str(&line)?;
            if let Event::Listening { addr } = event {
                break addr;
            }
        };
        addrs.push(addr);
        let (deliveries, ready) = (deliveries.clone(), ready.clone());
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let at = Instant::now();
                match serde_json::from_str::<Event>(&line) {
                    Ok(Event::Message { msg, .. }) if i > 0 => {
                        if let Some(idx) = index_of(&msg) {
                            deliveries.lock().expect("lock").entry((i, idx)).or_insert(at);
                        }
                    }
                    Ok(Event::Topics { peers, .. }) => {
                        ready.lock().expect("lock")[i] = peers.get(TOPIC).copied().unwrap_or(0);
                    }
                    _ => {}
                }
            }
        });
        procs.push(Proc { child, stdin });
    }
    // Wait until each node knows each neighbour's subscription.
    let degree = degrees(topology);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for p in &mut procs {
            writeln!(p.stdin, "/topics")?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = ready.lock().expect("lock").clone();
        if seen.iter().zip(&degree).all(|(s, d)| s >= d) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nodes never connected: {seen:?} of {degree:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pids: Vec<u32> = procs.iter().map(|p| p.child.id()).collect();
    let cpu_before: u64 = pids.iter().map(|p| cpu_us(*p)).sum();
    let t0 = Instant::now();
    let mut publish_at = Vec::with_capacity(args.messages);
    for i in 0..args.messages {
        let started = Instant::now();
        publish_at.push(started);
        writeln!(procs[0].stdin, "/pub {TOPIC} {}", body(i, args.size))?;
        procs[0].stdin.flush()?;
        pace(t0, interval, i + 1).await;
    }
    wait_deliveries(&deliveries, args.messages * (args.nodes - 1)).await;
    let cpu: u64 = pids.iter().map(|p| cpu_us(*p)).sum::<u64>() - cpu_before;
    let rss: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    for mut p in procs {
        let _ = writeln!(p.stdin, "/quit");
        drop(p.stdin);
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.child.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    let deliveries = deliveries.lock().expect("lock").clone();
    Ok(report(
        args,
        interval,
        "procs",
        Measured {
            publish_at,
            deliveries,
            cpu_us: cpu,
            rss,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_dials_earlier_nodes_only() {
        let t = topology(20, 2, 7);
        assert!(t[0].is_empty());
        assert_eq!(t[1], vec![0]);
        for (i, dials) in t.iter().enumerate().skip(2) {
            assert_eq!(dials.len(), 2);
            assert!(dials.iter().all(|&j| j < i));
            assert_ne!(dials[0], dials[1]);
        }
        assert_eq!(t, topology(20, 2, 7), "seeded");
    }

    #[test]
    fn percentiles_and_bodies() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        let b = body(42, 256);
        assert_eq!(b.len(), 256);
        assert_eq!(index_of(&b), Some(42));
    }
}
