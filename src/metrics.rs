//! Prometheus metrics: murmur's own counters and gauges, libp2p's (swarm,
//! gossipsub, identify, ping, kad, relay, dcutr), and the `--metrics ADDR`
//! HTTP endpoint.
//! Every metric is described in docs/metrics.md.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Why a received message was dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropReason {
    /// `malformed`, `bad_signature`, `forged_sender`, `decrypt_failed`, `stale`, `unknown_topic`, `misaddressed`.
    pub reason: &'static str,
}

/// How a commit of the inbox was made durable.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitSync {
    /// `full` (fsynced), `normal` (written, not fsynced) or `log` (topic
    /// messages appended to the intake log, not fsynced).
    pub sync: &'static str,
}

/// murmur's own metrics. Cheap to clone (every metric is an `Arc` inside).
#[derive(Clone, Default)]
pub struct Metrics {
    /// Messages this node published.
    pub published: Counter,
    /// Gossip messages (user messages, not control) that passed validation and opened.
    pub received: Counter,
    /// Topic control messages (member announcements) that passed validation and opened.
    pub control_received: Counter,
    /// Messages (topic and direct) newly stored and reported to the user.
    pub delivered: Counter,
    /// Received messages dropped, by reason.
    pub dropped: Family<DropReason, Counter>,
    /// Direct messages acknowledged by their recipient.
    pub dms_sent: Counter,
    /// Direct messages received and stored.
    pub dms_received: Counter,
    /// Connected peers.
    pub peers: Gauge,
    /// Disconnections of peers whose gossipsub score fell below the graylist threshold.
    pub graylisted: Counter,
    /// Messages in the inbox.
    pub inbox_messages: Gauge,
    /// Published messages waiting for a subscribed peer.
    pub queued_publishes: Gauge,
    /// Inserts waiting for the store.
    pub store_queue: Gauge,
    /// Inserts that failed (disk full, I/O error).
    pub store_errors: Counter,
    /// Commits of the inbox, by how they were made durable.
    pub store_commits: Family<CommitSync, Counter>,
    /// Checkpoints of the inbox's WAL (on their own thread).
    pub inbox_checkpoints: Counter,
    /// Catch-up exchanges this node started and finished.
    pub sync_sessions: Counter,
    /// Messages newly stored from catch-up.
    pub sync_received: Counter,
    /// Envelopes served to peers catching up.
    pub sync_sent: Counter,
    /// Catch-up requests refused (not a member, over the rate limit, bad request).
    pub sync_refused: Counter,
    /// Bytes of the envelopes received by catch-up (what the frames carry beyond them is overhead).
    pub sync_envelope_bytes: Counter,
    /// Direct messages waiting in the outbox.
    pub outbox: Gauge,
    /// Direct messages given up (expired or refused).
    pub dms_failed: Counter,
    /// Connected peers reached only through a relay.
    pub relayed_peers: Gauge,
    /// As a relay server: reservations accepted (new and renewed).
    pub relay_reservations: Counter,
    /// As a relay server: circuits opened between two peers.
    pub relay_circuits: Counter,
}

impl Metrics {
    /// Counts one commit made in `sync` mode (`full` or `normal`).
    pub fn commit(&self, sync: &'static str) {
        self.store_commits.get_or_create(&CommitSync { sync }).inc();
    }

    /// Registers every metric under `murmur_` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("murmur");
        r.register(
            "messages_published",
            "Messages this node published",
            self.published.clone(),
        );
        r.register(
            "messages_received",
            "Gossip messages (not control) that passed validation and opened",
            self.received.clone(),
        );
        r.register(
            "control_received",
            "Topic control messages (member announcements) that passed validation and opened",
            self.control_received.clone(),
        );
        r.register(
            "messages_delivered",
            "Messages (topic and direct) newly stored and reported",
            self.delivered.clone(),
        );
        r.register(
            "messages_dropped",
            "Received messages dropped, by reason",
            self.dropped.clone(),
        );
        r.register(
            "dms_sent",
            "Direct messages acknowledged by the recipient",
            self.dms_sent.clone(),
        );
        r.register(
            "dms_received",
            "Direct messages received and stored",
            self.dms_received.clone(),
        );
        r.register("peers", "Connected peers", self.peers.clone());
        r.register(
            "inbox_commits",
            "Commits of the inbox, by sync mode (full: fsynced; normal: not; log: topic messages appended to the intake log, moved into the database in groups)",
            self.store_commits.clone(),
        );
        r.register(
            "inbox_checkpoints",
            "Checkpoints of the inbox's WAL into its database file (on a thread of their own)",
            self.inbox_checkpoints.clone(),
        );
        r.register(
            "peers_relayed",
            "Connected peers reached only through a relay",
            self.relayed_peers.clone(),
        );
        r.register(
            "relay_reservations",
            "As a relay server: reservations accepted (new and renewed)",
            self.relay_reservations.clone(),
        );
        r.register(
            "relay_circuits",
            "As a relay server: circuits opened between two peers",
            self.relay_circuits.clone(),
        );
        r.register(
            "peers_graylisted",
            "Disconnections of peers whose gossipsub score fell below the graylist threshold",
            self.graylisted.clone(),
        );
        r.register("inbox_messages", "Messages in the inbox", self.inbox_messages.clone());
        r.register(
            "queued_publishes",
            "Published messages waiting for a subscribed peer",
            self.queued_publishes.clone(),
        );
        r.register("store_queue", "Inserts waiting for the store", self.store_queue.clone());
        r.register("store_errors", "Inbox writes that failed", self.store_errors.clone());
        r.register(
            "sync_sessions",
            "Catch-up exchanges this node started and finished",
            self.sync_sessions.clone(),
        );
        r.register(
            "sync_received",
            "Messages newly stored from catch-up",
            self.sync_received.clone(),
        );
        r.register(
            "sync_sent",
            "Envelopes served to peers catching up",
            self.sync_sent.clone(),
        );
        r.register(
            "sync_refused",
            "Catch-up requests refused (not a member, rate limit, bad request)",
            self.sync_refused.clone(),
        );
        r.register(
            "sync_envelope_bytes",
            "Bytes of the envelopes received by catch-up",
            self.sync_envelope_bytes.clone(),
        );
        r.register("outbox", "Direct messages waiting in the outbox", self.outbox.clone());
        r.register(
            "dms_failed",
            "Direct messages given up (expired or refused)",
            self.dms_failed.clone(),
        );
    }

    /// Counts a dropped message.
    pub fn drop(&self, reason: &'static str) {
        self.dropped.get_or_create(&DropReason { reason }).inc();
    }
}

/// Serves `GET /metrics` (Prometheus text format) at an already bound listener until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "encoding failed").into_response();
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
