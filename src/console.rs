//! The terminal front end: reads commands from stdin, prints events on stdout
//! (readable lines, or one JSON object per line with `--json`).

use std::io::Write;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::commands::{self, Command, HELP};
use crate::event::Event;
use crate::node::{InboxPage, Node};
use crate::reply::NodeError;
use crate::store::Cursor;

/// Longest stdin line read; a longer one is answered with an error and skipped.
const MAX_LINE_BYTES: usize = crate::envelope::MAX_MESSAGE_BYTES + 1024;

/// Bytes of waiting event lines written to stdout at once, at most.
const BATCH_BYTES: usize = 64 * 1024;

/// Where and how events are printed: a cloneable handle to the task that
/// writes stdout. The node's events and the console's own answers go through
/// that one task, so an answer never comes out before an event the node
/// emitted before answering (`/peers` without a peer, then its
/// `peer_disconnected`).
#[derive(Debug, Clone)]
pub struct Printer {
    json: bool,
    answers: mpsc::UnboundedSender<Event>,
}

impl Printer {
    /// Starts the printing task for `events`; `json` prints one JSON object
    /// per line instead of readable text.
    pub fn spawn(json: bool, events: broadcast::Receiver<Arc<Event>>) -> Self {
        let (answers, answers_rx) = mpsc::unbounded_channel();
        tokio::spawn(Output { json }.run(events, answers_rx));
        Self { json, answers }
    }

    /// Prints an answer of the console, after the events already emitted.
    /// In readable mode errors go to stderr; in JSON mode everything is a
    /// JSON line on stdout.
    pub fn print(&self, event: &Event) {
        if let Err(unsent) = self.answers.send(event.clone()) {
            // The printing task has stopped (the node is shutting down).
            Output { json: self.json }.write_now(&unsent.0);
        }
    }
}

/// The printing task's formatting.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
}

/// Where one event's output goes.
enum Sink {
    Stdout(String),
    Stderr(String),
    Nothing,
}

impl Output {
    /// Writes one event at once. A closed stdout is ignored.
    fn write_now(self, event: &Event) {
        match self.sink(event) {
            Sink::Stdout(line) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Sink::Stderr(line) => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Sink::Nothing => {}
        }
    }

    /// Where `event` goes: a line on stdout; in readable mode an error goes
    /// to stderr and a quiet event (a catch-up that moved nothing) nowhere.
    fn sink(self, event: &Event) -> Sink {
        if self.json {
            Sink::Stdout(event.to_json())
        } else if let Event::Error { .. } = event {
            Sink::Stderr(event.to_human())
        } else if event.is_quiet() {
            Sink::Nothing
        } else {
            Sink::Stdout(event.to_human())
        }
    }

    /// Queues `event`'s line in `lines` (or writes a readable-mode error to
    /// stderr at once).
    fn push(self, lines: &mut String, event: &Event) {
        match self.sink(event) {
            Sink::Stdout(line) => {
                lines.push_str(&line);
                lines.push('\n');
            }
            Sink::Stderr(line) => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Sink::Nothing => {}
        }
    }

    /// Prints every event of `events` and every answer of `answers` until the
    /// node stops. Before an answer it prints the events already waiting.
    /// Lines that are already waiting are written together (one write, not
    /// one per line), so a busy node does not make a system call per
    /// message; nothing waits for more to come.
    async fn run(self, mut events: broadcast::Receiver<Arc<Event>>, mut answers: mpsc::UnboundedReceiver<Event>) {
        let mut lines = String::new();
        let mut answers_open = true;
        loop {
            let (first, answer) = tokio::select! {
                received = events.recv() => (Some(received), None),
                answer = answers.recv(), if answers_open => {
                    answers_open = answer.is_some();
                    (None, answer)
                }
            };
            // Then the events already waiting: before an answer all of them
            // (the node emitted them before it answered), else a batch.
            let mut next = first.or_else(|| answer.as_ref().and_then(|_| try_next(&mut events)));
            let mut closed = false;
            while let Some(received) = next.take() {
                match received {
                    Ok(event) => self.push(&mut lines, &event),
                    Err(RecvError::Lagged(n)) => tracing::warn!("output fell behind: {n} events were not printed"),
                    Err(RecvError::Closed) => closed = true,
                }
                if !closed && (answer.is_some() || lines.len() < BATCH_BYTES) {
                    next = try_next(&mut events);
                }
            }
            if let Some(answer) = &answer {
                self.push(&mut lines, answer);
            }
            if !lines.is_empty() {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(lines.as_bytes());
                let _ = out.flush();
                lines.clear();
            }
            if closed {
                // Answers already sent, then; later ones `Printer::print` writes itself.
                answers.close();
                while let Ok(answer) = answers.try_recv() {
                    self.write_now(&answer);
                }
                return;
            }
        }
    }
}

/// The next event already waiting, as `recv` would give it, or `None` when
/// none is.
fn try_next(events: &mut broadcast::Receiver<Arc<Event>>) -> Option<Result<Arc<Event>, RecvError>> {
    match events.try_recv() {
        Ok(event) => Some(Ok(event)),
        Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        Err(TryRecvError::Empty) => None,
    }
}

/// Reads and drops what is left of a line, up to its newline (consumed) or
/// the end of input, a buffer at a time; returns how many bytes came before
/// the newline.
async fn skip_line(reader: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> usize {
    let mut skipped = 0;
    loop {
        let Ok(buf) = reader.fill_buf().await else {
            return skipped;
        };
        if buf.is_empty() {
            return skipped;
        }
        let (used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, Some(i)),
            None => (buf.len(), None),
        };
        reader.consume(used);
        match done {
            Some(i) => return skipped + i,
            None => skipped += used,
        }
    }
}

/// Reads stdin line by line and runs each command against `node` until
/// `/quit` (which cancels `quit`). A closed stdin leaves the node running.
pub async fn run_stdin(node: Node, printer: Printer, quit: CancellationToken) {
    let mut reader = BufReader::new(tokio::io::stdin());
    let mut console = Console {
        node,
        printer: printer.clone(),
        in_flight: JoinSet::new(),
        last_topic: None,
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64 + 1);
        let read = tokio::select! {
            r = limited.read_until(b'\n', &mut buf) => r,
            () = quit.cancelled() => return,
        };
        match read {
            Ok(0) => {
                tracing::info!("stdin closed; the node keeps running (Ctrl-C or SIGTERM stops it)");
                return;
            }
            Ok(_) if buf.len() > MAX_LINE_BYTES && !buf.ends_with(b"\n") => {
                // The rest of the line is read and dropped, never held.
                let rest = tokio::select! {
                    n = skip_line(&mut reader) => n,
                    () = quit.cancelled() => return,
                };
                printer.print(&Event::Error {
                    error: format!(
                        "line of {} bytes ignored: a message may be at most {} bytes (64 KiB)",
                        buf.len() + rest,
                        crate::envelope::MAX_MESSAGE_BYTES
                    ),
                });
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("reading stdin failed: {e}; the node keeps running");
                return;
            }
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            printer.print(&Event::Error {
                error: "input is not valid UTF-8".into(),
            });
            continue;
        };
        match commands::parse(line) {
            Ok(Command::Quit) => {
                console.settle().await;
                quit.cancel();
                return;
            }
            Ok(command) => {
                if let Some(event) = console.execute(command).await {
                    printer.print(&event);
                }
            }
            Err(e) => printer.print(&Event::Error { error: e.to_string() }),
        }
    }
}

impl Drop for Console {
    /// A console that stops (stdin closed) leaves its publishes in flight to
    /// finish, and report their errors, on their own.
    fn drop(&mut self) {
        self.in_flight.detach_all();
    }
}

/// Stdin session state.
struct Console {
    node: Node,
    printer: Printer,
    /// Publishes not yet stored; any other command waits for them first, so
    /// `/inbox` right after `/pub` shows the message. Finished ones are
    /// reaped at each publish: a long stream of lines holds only those
    /// still in flight.
    in_flight: JoinSet<()>,
    /// Where a line without a leading `/` is published.
    last_topic: Option<String>,
}

impl Console {
    /// Publishes without waiting for the inbox commit, so that lines typed or
    /// piped in quick succession share group commits; the outcome is printed
    /// when it comes (the `published` event, or an error).
    async fn publish(&mut self, topic: &str, msg: &str) -> Result<Option<Event>, NodeError> {
        let pending = self.node.submit_publish(topic, msg).await?;
        let printer = self.printer.clone();
        while self.in_flight.try_join_next().is_some() {}
        self.in_flight.spawn(async move {
            if let Err(e) = pending.await {
                printer.print(&Event::Error { error: e.to_string() });
            }
        });
        Ok(None)
    }

    /// Waits until every publish in flight is stored (or failed).
    async fn settle(&mut self) {
        while self.in_flight.join_next().await.is_some() {}
    }

    /// Where a plain line goes: the topic last used, else the node's only
    /// subscribed topic (as with a single `--topic`); none when that is ambiguous.
    fn say_topic(&self) -> Option<String> {
        self.last_topic.clone().or_else(|| {
            let topics = self.node.topics();
            (topics.len() == 1).then(|| topics[0].clone())
        })
    }

    /// Runs one command; returns the event to print for it, if any (events the
    /// node itself emits, such as `subscribed` or `published`, print on their own).
    async fn execute(&mut self, command: Command) -> Option<Event> {
        if !matches!(command, Command::Pub { .. } | Command::Say { .. }) {
            self.settle().await;
        }
        let result: Result<Option<Event>, NodeError> = match command {
            Command::Sub { topic, secret } => self.node.subscribe(&topic, secret.as_deref()).await.map(|s| {
                let already = s.already.map(|epoch| Event::Notice {
                    text: format!("already subscribed to {topic} (epoch {epoch}); nothing changed"),
                });
                self.last_topic = Some(topic);
                already
            }),
            Command::Unsub { topic } => self.node.unsubscribe(&topic).await.map(|()| {
                if self.last_topic.as_deref() == Some(&topic) {
                    self.last_topic = None;
                }
                None
            }),
            Command::Pub {
                topic,
                msg,
                client_id: Some(client_id),
            } => {
                // Idempotent: answered after the inbox lookup, in line.
                let result = self.node.publish_idempotent(&topic, &msg, &client_id).await.map(|p| {
                    p.duplicate.then(|| Event::Notice {
                        text: format!(
                            "already published to {topic} as {} (same --id {client_id}): nothing sent",
                            p.id
                        ),
                    })
                });
                self.last_topic = Some(topic);
                result
            }
            Command::Pub {
                topic,
                msg,
                client_id: None,
            } => {
                let result = self.publish(&topic, &msg).await;
                self.last_topic = Some(topic);
                result
            }
            Command::Say { msg } => match self.say_topic() {
                Some(topic) => {
                    let result = self.publish(&topic, &msg).await;
                    self.last_topic = Some(topic);
                    result
                }
                None => Ok(Some(Event::Error {
                    error: "which topic? use /pub TOPIC MESSAGE once (a plain line then goes to the topic last used)"
                        .into(),
                })),
            },
            // dm_sent (or dm_queued) is emitted by the node; nothing more to say.
            Command::Dm { to, msg } => self.node.dm(&to, &msg).await.map(|_| None),
            Command::Pending => self
                .node
                .pending()
                .await
                .map(|(dms, publishes)| Some(Event::Pending { dms, publishes })),
            Command::Inbox { topic, limit, before } => {
                // The command parser checked the cursor's form.
                let cursor = before.as_deref().and_then(Cursor::from_hex);
                let page = InboxPage {
                    topic,
                    before: cursor,
                    limit,
                    ..InboxPage::default()
                };
                self.node.inbox_page(&page).await.map(|messages| {
                    if messages.is_empty() && cursor.is_some() {
                        return Some(Event::Notice {
                            text: "no older messages".into(),
                        });
                    }
                    // A full page may have older messages before it.
                    let before = (messages.len() == limit)
                        .then(|| messages.iter().map(|m| m.cursor.clone()).min())
                        .flatten();
                    Some(Event::Inbox { messages, before })
                })
            }
            Command::Peers => self.node.peers().await.map(|peers| Some(Event::Peers { peers })),
            Command::Members { topic } => self
                .node
                .members(&topic)
                .await
                .map(|(epoch, members)| Some(Event::Members { topic, epoch, members })),
            // The `rekeyed` event says it is done.
            Command::Rekey { topic, remove } => self.node.rekey(&topic, &remove).await.map(|_| None),
            Command::Invite { topic, peer } => self.node.invite(&topic, &peer).await.map(|()| {
                Some(Event::Notice {
                    text: format!("invitation to {topic} sent to {peer} (end to end; retried until it arrives)"),
                })
            }),
            Command::Topics => self.node.topic_peers().await.map(|counts| {
                Some(Event::Topics {
                    topics: self.node.topics(),
                    peers: counts.subscribed,
                    mesh: counts.mesh,
                    epochs: counts.epochs,
                })
            }),
            Command::Whoami => self.node.whoami().await.map(|w| {
                Some(Event::Whoami {
                    peer: w.peer,
                    name: w.name,
                    addrs: w.addrs,
                })
            }),
            Command::Help => Ok(Some(Event::Help { text: HELP.into() })),
            Command::Quit | Command::Nothing => Ok(None),
        };
        result.unwrap_or_else(|e| Some(Event::Error { error: e.to_string() }))
    }
}
