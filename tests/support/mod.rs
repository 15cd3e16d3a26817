//! Test helpers: real `murmur` processes on loopback, driven over stdin and
//! read as `--json` events from stdout.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod http;
pub mod raw;

/// How long any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A `murmur` child process.
pub struct TestNode {
    pub name: String,
    pub data_dir: PathBuf,
    pub peer_id: String,
    /// The first listen address, dialable as is.
    pub addr: String,
    /// The API's `host:port`, when started with `--api`.
    pub api: Option<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<(Instant, Value)>,
    /// Every event seen so far, in order.
    pub seen: Vec<Value>,
    /// When each of `seen` arrived.
    pub seen_at: Vec<Instant>,
    /// When the process was spawned.
    pub started: Instant,
    stderr_path: PathBuf,
}

/// The path of the binary under test: cargo's, or MURMUR_TEST_BIN when set
/// (a copy of this checkout's build, for a target dir shared by several
/// checkouts, whose builds overwrite each other's `target/debug/murmur`).
pub fn murmur_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| std::env::var("MURMUR_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_murmur").to_owned()))
}

impl TestNode {
    /// Starts `murmur --json --no-mdns --listen /ip4/127.0.0.1/tcp/0` named
    /// `name` with data in `data_dir`, plus `extra` arguments, and waits for
    /// its first `listening` event.
    pub fn start(name: &str, data_dir: &Path, extra: &[&str]) -> TestNode {
        Self::start_with_env(name, data_dir, extra, &[])
    }

    /// As [`TestNode::start`], with extra environment variables.
    pub fn start_with_env(name: &str, data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> TestNode {
        let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
        args.extend_from_slice(extra);
        Self::launch(&[], name, data_dir, &args, env)
    }

    /// Starts `murmur --json` inside network namespace `netns` with mDNS on
    /// and the default listen addresses, plus `extra`.
    pub fn start_in_netns(netns: &str, name: &str, data_dir: &Path, extra: &[&str]) -> TestNode {
        Self::launch(&["ip", "netns", "exec", netns], name, data_dir, extra, &[])
    }

    /// As [`TestNode::start`], but no file the process writes may grow past
    /// `max_bytes` (RLIMIT_FSIZE, with SIGXFSZ ignored, so such a write fails
    /// with EFBIG as on a full disk). Logs at warn level only, to keep its
    /// stderr log under the limit.
    #[cfg(unix)]
    pub fn start_with_file_size_limit(name: &str, data_dir: &Path, extra: &[&str], max_bytes: u64) -> TestNode {
        use std::os::unix::process::CommandExt;
        let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
        args.extend_from_slice(extra);
        Self::launch_configured(&[], name, data_dir, &args, &[("RUST_LOG", "warn")], &|cmd| {
            // SAFETY: signal, getrlimit and setrlimit are async-signal-safe,
            // and the closure touches nothing but its own locals.
            unsafe {
                cmd.pre_exec(move || {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    // The soft limit only: the test may lift it again (TestNode::lift_file_size_limit).
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    limit.rlim_cur = limit.rlim_max.min(max_bytes as libc::rlim_t);
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    /// Raises the process's file size limit (see
    /// [`TestNode::start_with_file_size_limit`]) to its hard limit: there is room again.
    #[cfg(unix)]
    pub fn lift_file_size_limit(&self) {
        let pid = self.child.id() as libc::pid_t;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain system calls on valid pointers.
        let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut limit) };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    /// Runs `wrapper… murmur --json --name NAME --data-dir DIR args…` and waits
    /// for its first `listening` event (and `api_listening` with `--api`).
    pub fn launch(wrapper: &[&str], name: &str, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> TestNode {
        Self::launch_configured(wrapper, name, data_dir, args, env, &|_| {})
    }

    /// As [`TestNode::launch`], with `configure` applied to the command before it is spawned.
    fn launch_configured(
        wrapper: &[&str],
        name: &str,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        configure: &dyn Fn(&mut Command),
    ) -> TestNode {
        let stderr_path = data_dir.with_extension("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr log");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(murmur_bin());
                c
            }
            None => Command::new(murmur_bin()),
        };
        cmd.args(["--json", "--name", name, "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn,murmur=debug");
        }
        // A passphrase in the developer's environment must not seal test nodes.
        cmd.env_remove("MURMUR_PASSPHRASE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        configure(&mut cmd);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn murmur");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
                if tx.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        let mut node = TestNode {
            name: name.to_owned(),
            data_dir: data_dir.to_owned(),
            peer_id: String::new(),
            addr: String::new(),
            api: None,
            child,
            stdin,
            events,
            seen: Vec::new(),
            seen_at: Vec::new(),
            started,
            stderr_path,
        };
        let listening = node.wait_event("listening", |_| true);
        node.addr = listening["addr"].as_str().unwrap().to_owned();
        node.peer_id = node.addr.rsplit('/').next().unwrap().to_owned();
        if args.contains(&"--api") {
            let seen = node.seen.iter().find(|v| v["event"] == "api_listening").cloned();
            let event = seen.unwrap_or_else(|| node.wait_event("api_listening", |_| true));
            node.api = Some(event["addr"].as_str().unwrap().trim_start_matches("http://").to_owned());
        }
        node
    }

    /// When the `i`-th seen event arrived, relative to the process start.
    pub fn seen_after_start(&self, i: usize) -> Duration {
        self.seen_at[i].duration_since(self.started)
    }

    /// Writes one line to the node's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write stdin");
        stdin.flush().unwrap();
    }

    /// Writes raw bytes to the node's stdin.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write stdin");
        stdin.flush().unwrap();
    }

    /// Closes the node's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the next event named `kind` matching `pred`, among events not
    /// yet returned by a wait; panics after [`WAIT`] saying what was missing.
    pub fn wait_event(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_event_for(kind, WAIT, pred)
            .unwrap_or_else(|| panic!("{}: no {kind:?} event within {WAIT:?}\n{}", self.name, self.report()))
    }

    /// As [`TestNode::wait_event`] but returns `None` after `timeout`.
    pub fn wait_event_for(&mut self, kind: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.wait_matching(timeout, |v| v["event"] == kind && pred(v))
    }

    /// The next event (of any kind) matching `pred`, among events not yet
    /// returned by a wait; `None` after `timeout`.
    pub fn wait_matching(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((at, v)) => {
                    self.seen.push(v.clone());
                    self.seen_at.push(at);
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Collects every event that arrives within `window`.
    pub fn drain_for(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Ok((at, v)) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v.clone());
            self.seen_at.push(at);
            out.push(v);
        }
        out
    }

    /// Sends a command and waits for the answer event named `kind`.
    pub fn ask(&mut self, line: &str, kind: &str) -> Value {
        self.send(line);
        self.wait_event(kind, |_| true)
    }

    /// The inbox messages (`/inbox` with the given arguments).
    pub fn inbox(&mut self, args: &str) -> Vec<Value> {
        let v = self.ask(&format!("/inbox {args}"), "inbox");
        v["messages"].as_array().unwrap().clone()
    }

    /// Subscribes and waits for the `subscribed` event.
    pub fn subscribe(&mut self, topic: &str, secret: Option<&str>) {
        match secret {
            Some(s) => self.send(&format!("/sub {topic} {s}")),
            None => self.send(&format!("/sub {topic}")),
        }
        self.wait_event("subscribed", |v| v["topic"] == topic);
    }

    /// Polls `/peers` until `pred` holds for the list, or fails after [`WAIT`].
    pub fn wait_peers(&mut self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let peers = self.ask("/peers", "peers")["peers"].as_array().unwrap().clone();
            if pred(&peers) {
                return peers;
            }
            if Instant::now() > deadline {
                panic!("{}: peers never {what}: {peers:?}\n{}", self.name, self.report());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `/topics` until at least `n` connected peers are known to be
    /// subscribed to `topic` (a publish now reaches them all), or fails after [`WAIT`].
    pub fn wait_topic_peers(&mut self, topic: &str, n: u64) {
        self.wait_topic_count(topic, "peers", n);
    }

    /// Polls `/topics` until `field` (`peers` or `mesh`) of `topic` is at least `n`, or fails after [`WAIT`].
    fn wait_topic_count(&mut self, topic: &str, field: &str, n: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let topics = self.ask("/topics", "topics");
            if topics[field][topic].as_u64().unwrap_or(0) >= n {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: {field} of {topic} never reached {n}: {topics}\n{}",
                    self.name,
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn report(&self) -> String {
        let seen: Vec<String> = self.seen.iter().map(|v| v.to_string()).collect();
        format!("events seen:\n  {}\nstderr:\n{}", seen.join("\n  "), self.stderr())
    }

    /// The first event named `kind` seen so far, or else the next one.
    pub fn seen_or_wait(&mut self, kind: &str) -> Value {
        self.seen_or_wait_for(kind, |_| true).0
    }

    /// The first event named `kind` matching `pred` seen so far, or else the
    /// next one, with when it arrived. Unlike [`TestNode::wait_event`] this
    /// finds an event that start-up or an earlier wait went past: a node
    /// started with `--peer` may print `peer_connected` before `listening`.
    pub fn seen_or_wait_for(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> (Value, Instant) {
        let matches = |v: &Value| v["event"] == kind && pred(v);
        match self.seen.iter().position(matches) {
            Some(i) => (self.seen[i].clone(), self.seen_at[i]),
            None => {
                let v = self.wait_event(kind, &pred);
                (v, self.last_seen_at())
            }
        }
    }

    /// When the event most recently returned by a wait arrived.
    pub fn last_seen_at(&self) -> Instant {
        *self.seen_at.last().expect("an event was seen")
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }

    /// The `host:port` of the node's metrics endpoint (started with `--metrics`).
    pub fn metrics_addr(&mut self) -> String {
        let url = self.seen_or_wait("metrics_listening")["addr"]
            .as_str()
            .unwrap()
            .to_owned();
        url.trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_owned()
    }

    /// Polls `/topics` until our mesh for `topic` holds at least `n` peers, or fails after [`WAIT`].
    pub fn wait_mesh(&mut self, topic: &str, n: u64) {
        self.wait_topic_count(topic, "mesh", n);
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `/quit` and waits for a clean exit.
    pub fn quit(mut self) -> ExitStatus {
        self.send("/quit");
        self.wait_exit()
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{}: did not exit within {WAIT:?}\n{}", self.name, self.report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `script check` says the namespace tests can run here. Without
/// the capability they are skipped with a message, unless
/// MURMUR_NETNS_TESTS=1 (CI), where that is a failure.
pub fn netns_tests_can_run(script: &str, what: &str) -> bool {
    let check = Command::new(script)
        .arg("check")
        .output()
        .expect("run the namespace script");
    if check.status.success() {
        return true;
    }
    let why = String::from_utf8_lossy(&check.stderr).trim().to_owned();
    if std::env::var("MURMUR_NETNS_TESTS").as_deref() == Ok("1") {
        panic!("MURMUR_NETNS_TESTS=1 but {why}");
    }
    eprintln!("skipping {what}: {why} (run as root, or set MURMUR_NETNS_TESTS=1 to make this a failure)");
    false
}

/// Starts tshark (behind `wrapper`, e.g. `ip netns exec NS`) capturing on
/// `iface` into `pcap` with capture filter `filter`, and returns once it
/// is capturing. Stop it with SIGINT.
pub fn start_capture(wrapper: &[&str], iface: &str, filter: &str, pcap: &Path) -> Child {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg("tshark");
            c
        }
        None => Command::new("tshark"),
    };
    cmd.args(["-i", iface, "-q"]);
    if !filter.is_empty() {
        cmd.args(["-f", filter]);
    }
    let tshark = cmd
        .arg("-w")
        .arg(pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tshark");
    // Capturing once it has opened the file.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pcap.exists() {
        assert!(Instant::now() < deadline, "tshark never started capturing");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    tshark
}

/// The display names on a roster (a `members` event or `GET /members` body).
pub fn member_names(roster: &Value) -> Vec<&str> {
    roster["members"]
        .as_array()
        .expect("a members list")
        .iter()
        .map(|m| m["name"].as_str().expect("a name"))
        .collect()
}

/// A fresh temporary directory for one test; data dirs and node logs go below
/// it. With MURMUR_KEEP_TEST_DIRS=1 it is kept (and its path printed) for a post-mortem.
pub fn temp() -> tempfile::TempDir {
    let keep = std::env::var("MURMUR_KEEP_TEST_DIRS").as_deref() == Ok("1");
    let dir = tempfile::Builder::new()
        .prefix("murmur-test-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("tempdir");
    if keep {
        eprintln!("test dir kept: {}", dir.path().display());
    }
    dir
}

/// The resident memory (VmRSS) of process `pid` in KiB, read from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The value of the first sample of `name` in a Prometheus text exposition;
/// `name` may include labels (`murmur_messages_dropped_total{reason="malformed"}`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// What a secret session says: every string must stay off the wire, the logs and the disk.
pub struct SecretSession<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Its secret.
    pub secret: &'a str,
    /// A topic message body.
    pub body: &'a str,
    /// A direct message body.
    pub dm: &'a str,
}

impl SecretSession<'_> {
    /// The strings that must not leak.
    pub fn secrets(&self) -> [&str; 4] {
        [self.topic, self.secret, self.body, self.dm]
    }

    /// Runs the session between two nodes (alice and bob, data and logs
    /// under `dir`, with `env`): alice publishes on the secret topic, bob
    /// answers with a DM; returns once both arrived and both nodes quit
    /// cleanly, with the events each of them emitted (alice's first).
    pub fn run(&self, dir: &Path, env: &[(&str, &str)]) -> [Vec<Value>; 2] {
        let topic_arg = format!("{}={}", self.topic, self.secret);
        let mut a = TestNode::start_with_env("alice", &dir.join("a"), &["--topic", &topic_arg], env);
        let mut b = TestNode::start_with_env(
            "bob",
            &dir.join("b"),
            &["--topic", &topic_arg, "--peer", &a.addr.clone()],
            env,
        );
        b.wait_topic_peers(self.topic, 1);
        a.send(&format!("/pub {} {}", self.topic, self.body));
        b.wait_event("message", |v| v["msg"] == self.body);
        b.wait_peers("include alice", |p| p.iter().any(|p| p["name"] == "alice"));
        b.send(&format!("/dm alice {}", self.dm));
        a.wait_event("dm", |v| v["msg"] == self.dm);
        let seen = [a.seen.clone(), b.seen.clone()];
        assert!(a.quit().success());
        assert!(b.quit().success());
        seen
    }
}

/// Every file below `dir` (recursively).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Every file below `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_below(dir)
        .into_iter()
        .filter(|path| std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)))
        .collect()
}
