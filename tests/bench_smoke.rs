//! Smoke runs of the swarm benchmark (small: 5 nodes, 50 messages) and of
//! the catch-up benchmark (300 messages): they still work and report what
//! they should. Their speed is measured elsewhere (docs/performance.md), not here.

mod support;

use std::process::Command;

fn bench(extra: &[&str]) -> serde_json::Value {
    run(&[&["--nodes", "5", "--messages", "50", "--interval-ms", "5"], extra].concat())
}

fn run(args: &[&str]) -> serde_json::Value {
    let out = Command::new(support::murmur_bin())
        .arg("bench")
        .args(args)
        .output()
        .expect("run murmur bench");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a result line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

fn check(r: &serde_json::Value, mode: &str) {
    assert_eq!(r["mode"], mode);
    assert_eq!(r["nodes"], 5);
    assert_eq!(r["messages"], 50);
    assert_eq!(r["size"], 256);
    assert_eq!(r["delivery_ratio"], 1.0, "{r}");
    let lat = &r["latency_ms"];
    let (p50, p99, max) = (
        lat["p50"].as_f64().unwrap(),
        lat["p99"].as_f64().unwrap(),
        lat["max"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{r}");
    assert!(r["throughput_msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["rss_kib"]["avg"].as_u64().unwrap() > 0);
    assert!(r["cpu_us_per_msg"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_swarm_benchmark_runs_in_process_and_as_processes() {
    check(&bench(&[]), "inproc");
    check(&bench(&["--procs"]), "procs");
    check(&bench(&["--plain"]), "inproc-plain");
}

#[test]
fn the_catch_up_benchmark_runs() {
    let r = run(&["--catchup", "--messages", "300"]);
    assert_eq!(r["mode"], "catchup");
    assert_eq!(r["received"], 300, "{r}");
    let (envelopes, frames) = (
        r["envelope_bytes"].as_u64().unwrap(),
        r["frame_bytes"].as_u64().unwrap(),
    );
    assert!(envelopes > 300 * 256 && frames > envelopes, "{r}");
    assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
}
