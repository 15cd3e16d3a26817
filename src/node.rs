//! The [`Node`]: starts the swarm, store and event loop, and is the cloneable
//! handle every front end (stdin, the HTTP API, library users) talks through.
//!
//! ```text
//!  stdin task ─┐                      ┌─> libp2p Swarm (gossipsub, dm, mdns, identify, ping)
//!  API task  ──┼─ Request (mpsc) ──> EventLoop
//!  library   ──┘                      └─> Store task (SQLite, group commits)
//!       ^                                      │
//!       └──────── Event (broadcast) <──────────┴── (messages reported after commit)
//! ```

use std::sync::{Arc, RwLock};
use std::time::Duration;

use libp2p::{noise, tcp, yamux, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::commands::{validate_topic, MAX_CLIENT_ID_LEN};
use crate::config::Config;
use crate::envelope::{Envelope, Purpose, MAX_NAME_LEN};
use crate::event::{Event, InboxItem, PeerSummary};
use crate::keyring::{load_or_create_identity, Keyring, SECRET_FILES};
use crate::metrics::Metrics;
use crate::network::behaviour::{Behaviour, Settings};
use crate::network::{EventLoop, Request};
use crate::reply::DmRecord;
use crate::reply::{DmOutcome, NodeError, Published, Subscription, TopicPeers, Whoami};
use crate::store::{Cursor, InboxQuery, Store};
use crate::vault::{ensure_private_dir, Vault};
use prometheus_client::registry::Registry;

/// Requests that may wait for the event loop.
pub const REQUEST_QUEUE: usize = 256;
/// Events buffered per subscriber; a subscriber that falls further behind misses events.
pub const EVENT_BUFFER: usize = 4096;
/// Connections idle this long (no protocol keeps them open) are closed. Long:
/// LAN peers stay connected (for /peers and DMs by name) rather than churn.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);
/// A dial (transport, Noise and Yamux) that has not completed by then fails,
/// so a redial after a partition is not stuck behind a dead attempt.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// A handle to a running node. Cheap to clone; every method talks to the
/// node's event loop or store over channels.
#[derive(Clone)]
pub struct Node {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<Event>>,
    store: Store,
    keyring: Arc<RwLock<Keyring>>,
    peer_id: PeerId,
    name: String,
    /// Every metric of this node (murmur's and libp2p's), for `--metrics`.
    registry: Arc<Registry>,
}

/// Which page of the inbox [`Node::inbox_page`] reads.
#[derive(Debug, Clone, Default)]
pub struct InboxPage {
    /// Only this topic (all its epochs).
    pub topic: Option<String>,
    /// Only messages with a sender timestamp at or after this (unix ms).
    pub since: Option<u64>,
    /// Walk back: only messages before this cursor.
    pub before: Option<Cursor>,
    /// Walk forward: only messages after this cursor (the oldest of them).
    pub after: Option<Cursor>,
    /// At most this many.
    pub limit: usize,
}

/// The file in a data dir that a running node holds locked (with its pid
/// inside once it has started), so that a second node on the same data dir
/// refuses to start.
pub const LOCK_FILE: &str = "murmur.lock";

/// Locks `dir` for this process: two nodes on one data dir would share one
/// identity and one inbox. Where the file system cannot lock, warns and
/// goes on.
///
/// # Errors
/// [`NodeError::Startup`] when another process holds the lock, naming its pid.
fn lock_data_dir(dir: &std::path::Path) -> Result<Option<std::fs::File>, NodeError> {
    use std::io::Read;
    let path = dir.join(LOCK_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| NodeError::Startup(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        // The pid goes in once the node has started: a start refused later
        // (a wrong passphrase) leaves the data dir as it was.
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let by = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            Err(NodeError::Startup(format!(
                "{} is in use by another murmur node{by}\nhint: stop that node first, or give this one another --data-dir",
                dir.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(path = %path.display(), "cannot lock the data dir ({e}); make sure no other node uses it");
            Ok(None)
        }
    }
}

/// Writes this process's pid into the locked lock file, for the error a
/// second node gets.
fn record_pid(mut file: &std::fs::File) {
    use std::io::{Seek, Write};
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
}

/// Checks a display name: 1 to 64 bytes, no control characters.
///
/// # Errors
/// [`NodeError::InvalidName`].
pub fn validate_name(name: &str) -> Result<(), NodeError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(NodeError::InvalidName(name.to_owned()));
    }
    Ok(())
}

impl Node {
    /// Starts a node: opens the data dir, identity, keyring and inbox, builds
    /// the swarm, listens, subscribes the configured topics and spawns the
    /// event loop. Returns the handle and the loop's task (it ends after
    /// [`Node::shutdown`]).
    ///
    /// Subscribe to [`Node::events`] before calling anything that emits, or
    /// pass a receiver made with [`Node::start_with_events`].
    ///
    /// # Errors
    /// [`NodeError::Startup`] when a file, the database or a listen address fails.
    pub async fn start(config: Config) -> Result<(Node, JoinHandle<()>), NodeError> {
        let (node, _events, task) = Self::start_with_events(config).await?;
        Ok((node, task))
    }

    /// Like [`Node::start`], also returning an event receiver that sees every
    /// event from the first (the `listening` ones included).
    ///
    /// # Errors
    /// As [`Node::start`].
    pub async fn start_with_events(
        config: Config,
    ) -> Result<(Node, broadcast::Receiver<Arc<Event>>, JoinHandle<()>), NodeError> {
        validate_name(&config.name)?;
        let startup = |e: &dyn std::fmt::Display| NodeError::Startup(e.to_string());
        ensure_private_dir(&config.data_dir).map_err(|e| startup(&e))?;
        let lock = lock_data_dir(&config.data_dir)?;
        // Argon2id takes a fraction of a second of CPU: not on the runtime's threads.
        let (dir, passphrase) = (config.data_dir.clone(), config.passphrase.clone());
        let (vault, opened) =
            tokio::task::spawn_blocking(move || Vault::open(&dir, passphrase.as_ref(), &SECRET_FILES))
                .await
                .map_err(|e| startup(&e))?
                .map_err(|e| startup(&e))?;
        let keypair = load_or_create_identity(&config.data_dir, &vault).map_err(|e| startup(&e))?;
        let identity = keypair.clone();
        let keyring = Arc::new(RwLock::new(
            Keyring::load_or_create(&config.data_dir, vault).map_err(|e| startup(&e))?,
        ));
        let (events, first_receiver) = broadcast::channel(EVENT_BUFFER);
        if let Some(text) = opened.notice(&config.data_dir) {
            let _ = events.send(Arc::new(Event::Notice { text }));
        }
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        let store = Store::open_with_metrics(&config.data_dir, events.clone(), metrics.clone(), config.durability)
            .map_err(|e| startup(&e))?;
        let next_seq = store.next_seq().await.map_err(|e| startup(&e))?;

        let settings = Settings {
            name: config.name.clone(),
            mdns: config.mdns,
            signed_gossip: config.plain,
            relay_server: config.relay_server,
            upnp: config.upnp,
            private_wan: config.private_wan,
            dht: !config.plain
                && (!config.bootstrap.is_empty()
                    || config.relay_server
                    || !config.external_addrs.is_empty()
                    || config.data_dir.join(crate::network::dht::ROUTING_TABLE_FILE).exists()),
        };
        let (dns_config, dns_options) = dns_config();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| startup(&e))?
            .with_quic()
            .with_dns_config(dns_config, dns_options)
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| startup(&e))?
            .with_behaviour(|key, relay_client| {
                Behaviour::new(key, relay_client, &settings, &mut registry)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(|e| startup(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            .with_connection_timeout(CONNECTION_TIMEOUT)
            .build();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Startup(format!("cannot listen on {addr}: {e}")))?;
        }
        let peer_id = *swarm.local_peer_id();
        let libp2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
        metrics.register(&mut registry);
        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let mut event_loop = EventLoop::new(
            swarm,
            &config,
            identity,
            requests_rx,
            events.clone(),
            store.clone(),
            keyring.clone(),
            next_seq,
            metrics,
            libp2p_metrics,
        );
        // Topics from the keyring (earlier runs), then those of the command line.
        let saved: Vec<_> = keyring.read().expect("keyring lock").subscribed().cloned().collect();
        let announced = store
            .announced(saved.iter().map(|e| e.id).collect())
            .await
            .map_err(|e| NodeError::Startup(format!("cannot read the inbox: {e}")))?;
        event_loop.already_announced(announced);
        for entry in saved {
            event_loop.join(entry)?;
        }
        for (topic, secret) in &config.topics {
            event_loop.subscribe(topic, secret.as_deref()).map_err(|e| match e {
                NodeError::SubscribedOtherwise(_) => NodeError::Startup(format!(
                    "--topic {topic}: this data dir is subscribed to {topic} with a different secret\n\
                     hint: leave it first (/unsub {topic}), or start with another --data-dir"
                )),
                e => e,
            })?;
        }
        // The data dir stays locked until the loop has closed the inbox.
        if let Some(file) = &lock {
            record_pid(file);
        }
        let task = tokio::spawn(async move {
            event_loop.run().await;
            drop(lock);
        });
        let node = Node {
            requests,
            events,
            store,
            keyring,
            peer_id,
            name: config.name,
            registry: Arc::new(registry),
        };
        Ok((node, first_receiver, task))
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(make(reply)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// A receiver of every event from now on.
    pub fn events(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Emits `event` to every event receiver (front ends use it to report their own errors).
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(Arc::new(event));
    }

    /// The node's metrics registry (encode it with `prometheus_client`).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// This node's display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Subscribes to `topic` with `secret` (none: an open topic). Subscribing
    /// again with the same secret changes nothing (`already`), also after
    /// rekeys moved the topic to a later epoch.
    ///
    /// # Errors
    /// A bad topic name, [`NodeError::SubscribedOtherwise`] when the node is
    /// subscribed to `topic` with another secret (or it is private and no
    /// secret is given), a keyring write failure, or a stopped node.
    pub async fn subscribe(&self, topic: &str, secret: Option<&str>) -> Result<Subscription, NodeError> {
        let (topic, secret) = (topic.to_owned(), secret.map(str::to_owned));
        self.call(|reply| Request::Subscribe { topic, secret, reply }).await?
    }

    /// Leaves `topic` (its stored messages stay readable).
    ///
    /// # Errors
    /// [`NodeError::NotSubscribed`], or a stopped node.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), NodeError> {
        let topic = topic.to_owned();
        self.call(|reply| Request::Unsubscribe { topic, reply }).await?
    }

    /// Publishes `msg` on `topic`. Returns once the message is stored.
    ///
    /// # Errors
    /// [`NodeError::NotSubscribed`], a message over the limit, a full queue, a store failure.
    pub async fn publish(&self, topic: &str, msg: &str) -> Result<Published, NodeError> {
        self.submit_publish(topic, msg).await?.await
    }

    /// Hands a publish to the node and returns as soon as it is queued (in
    /// order: publishes submitted one after another go out in that order),
    /// with a future for its result. Lets a caller keep many publishes in
    /// flight, so their inbox writes share group commits.
    ///
    /// # Errors
    /// [`NodeError::Stopped`]; the returned future gives the publish's own result.
    pub async fn submit_publish(
        &self,
        topic: &str,
        msg: &str,
    ) -> Result<impl std::future::Future<Output = Result<Published, NodeError>> + Send + 'static, NodeError> {
        self.submit(topic, msg, None).await
    }

    async fn submit(
        &self,
        topic: &str,
        msg: &str,
        client_key: Option<[u8; 32]>,
    ) -> Result<impl std::future::Future<Output = Result<Published, NodeError>> + Send + 'static, NodeError> {
        let (reply, rx) = oneshot::channel();
        let request = Request::Publish {
            topic: topic.to_owned(),
            msg: msg.to_owned(),
            client_key,
            reply,
        };
        self.requests.send(request).await.map_err(|_| NodeError::Stopped)?;
        Ok(async move { rx.await.map_err(|_| NodeError::Stopped)? })
    }

    /// Publishes at most once per `client_id` and topic: a second call with the
    /// same client id (a retry after a lost answer, even after a restart)
    /// returns the first message's id and publishes nothing. The client id is
    /// stored only as a keyed hash.
    ///
    /// # Errors
    /// As [`Node::publish`]; [`NodeError::InvalidClientId`] for an empty or over-long id.
    pub async fn publish_idempotent(&self, topic: &str, msg: &str, client_id: &str) -> Result<Published, NodeError> {
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_LEN {
            return Err(NodeError::InvalidClientId);
        }
        let key = {
            let keyring = self.keyring.read().expect("keyring lock");
            let mut material = Vec::with_capacity(64 + topic.len() + client_id.len());
            material.extend_from_slice(keyring.local_key());
            material.extend_from_slice(&(topic.len() as u16).to_be_bytes());
            material.extend_from_slice(topic.as_bytes());
            material.extend_from_slice(client_id.as_bytes());
            crate::crypto::sha256(&material)
        };
        if let Some(id) = self
            .store
            .client_id(key)
            .await
            .map_err(|e| NodeError::Store(e.to_string()))?
        {
            // Stored with the first publish; it may still wait for a peer.
            let queued = self.call(|reply| Request::IsQueued { id, reply }).await?;
            return Ok(Published {
                id: hex::encode(id),
                queued,
                duplicate: true,
            });
        }
        self.submit(topic, msg, Some(key)).await?.await
    }

    /// Sends a direct message to a peer id or a name (a private topic's
    /// member who signed it first, then a connected or known peer), sealed end
    /// to end for it. Answers once the recipient has acknowledged storing it
    /// (`queued: false`), or once the first attempt failed and the message
    /// waits in the outbox (`queued: true`; retried until the expiry).
    ///
    /// # Errors
    /// Unknown or ambiguous name, refusal by the recipient, a full outbox, or
    /// a message over the limit.
    pub async fn dm(&self, to: &str, msg: &str) -> Result<DmOutcome, NodeError> {
        let (to, msg) = (to.to_owned(), msg.to_owned());
        self.call(|reply| Request::Dm { to, msg, reply }).await?
    }

    /// What waits: direct messages in the outbox, and publishes waiting for a
    /// subscribed peer (per topic).
    ///
    /// # Errors
    /// A stopped node.
    pub async fn pending(
        &self,
    ) -> Result<(Vec<crate::event::OutboxItem>, std::collections::BTreeMap<String, usize>), NodeError> {
        self.call(|reply| Request::Pending { reply }).await
    }

    /// Connected peers.
    ///
    /// # Errors
    /// A stopped node.
    pub async fn peers(&self) -> Result<Vec<PeerSummary>, NodeError> {
        self.call(|reply| Request::Peers { reply }).await
    }

    /// Our id, name and addresses.
    ///
    /// # Errors
    /// A stopped node.
    pub async fn whoami(&self) -> Result<Whoami, NodeError> {
        self.call(|reply| Request::Whoami { reply }).await
    }

    /// Per subscribed topic: connected peers known to be subscribed, and the
    /// gossipsub mesh size (peers we exchange full messages with).
    ///
    /// # Errors
    /// A stopped node.
    pub async fn topic_peers(&self) -> Result<TopicPeers, NodeError> {
        self.call(|reply| Request::Mesh { reply }).await
    }

    /// The current epoch of `topic` and its members.
    ///
    /// # Errors
    /// A bad topic name, a topic not subscribed, or a stopped node.
    pub async fn members(&self, topic: &str) -> Result<(u32, Vec<crate::event::MemberSummary>), NodeError> {
        let topic = topic.to_owned();
        self.call(|reply| Request::Members { topic, reply }).await?
    }

    /// Moves `topic` to a new epoch, whose keys go end to end to every member
    /// but `remove` (peer ids or names); returns the new epoch. The removed
    /// read nothing published from now on.
    ///
    /// # Errors
    /// A bad topic name, a topic not subscribed, an unknown peer, or a
    /// keyring write failure.
    pub async fn rekey(&self, topic: &str, remove: &[String]) -> Result<u32, NodeError> {
        let (topic, remove) = (topic.to_owned(), remove.to_vec());
        self.call(|reply| Request::Rekey { topic, remove, reply }).await?
    }

    /// Sends the current epoch of `topic` end to end to `peer` (a peer id or
    /// a name, resolved as for [`Node::dm`]), who joins it.
    ///
    /// # Errors
    /// A bad topic name, a topic not subscribed, an unknown peer.
    pub async fn invite(&self, topic: &str, peer: &str) -> Result<(), NodeError> {
        let (topic, peer) = (topic.to_owned(), peer.to_owned());
        self.call(|reply| Request::Invite { topic, peer, reply }).await?
    }

    /// Subscribed topic names, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.keyring
            .read()
            .expect("keyring lock")
            .subscribed()
            .map(|t| t.name.clone())
            .collect()
    }

    /// Reads the inbox, decrypting as it goes: the last `limit` messages
    /// (of `topic` only, if given; from `since`, unix ms, if given), oldest first.
    ///
    /// # Errors
    /// A bad topic name, a topic never subscribed, or a store failure.
    pub async fn inbox(
        &self,
        topic: Option<&str>,
        since: Option<u64>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, NodeError> {
        let page = InboxPage {
            topic: topic.map(str::to_owned),
            since,
            limit,
            ..InboxPage::default()
        };
        self.inbox_page(&page).await
    }

    /// Reads one page of the inbox, oldest first: the newest `limit`
    /// messages, or, with `before`, the newest before that cursor (walking
    /// back), or, with `after`, the oldest after it (walking forward). Every
    /// item carries its cursor; a page's smallest is where the next page back
    /// starts. Messages of every epoch of a topic are read.
    ///
    /// # Errors
    /// A bad topic name, a topic never subscribed, or a store failure.
    pub async fn inbox_page(&self, page: &InboxPage) -> Result<Vec<InboxItem>, NodeError> {
        let (topic, since, limit) = (page.topic.as_deref(), page.since, page.limit);
        let topics = match topic {
            Some(t) => {
                validate_topic(t)?;
                let keyring = self.keyring.read().expect("keyring lock");
                let ids: Vec<[u8; 32]> = keyring.all().filter(|e| e.name == t).map(|e| e.id).collect();
                if ids.is_empty() {
                    return Err(NodeError::NotSubscribed(t.to_owned()));
                }
                Some(ids)
            }
            None => None,
        };
        let rows = self
            .store
            .query(InboxQuery {
                topics,
                since,
                before: page.before,
                after: page.after,
                limit,
            })
            .await
            .map_err(|e| NodeError::Store(e.to_string()))?;
        let keyring = self.keyring.read().expect("keyring lock");
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            match open_stored(&keyring, row.purpose, &row.envelope, row.via.as_str()) {
                Some((item, seq)) => items.push((
                    InboxItem {
                        cursor: Cursor { ts: row.ts, id: row.id }.to_hex(),
                        ..item
                    },
                    seq,
                )),
                None => tracing::warn!(id = hex::encode(row.id), "an inbox record does not open; skipped"),
            }
        }
        // By sender timestamp; one sender's messages with equal timestamps in
        // the order it sent them (its sequence number), however they arrived.
        items.sort_by(|(a, a_seq), (b, b_seq)| a.ts.cmp(&b.ts).then(a.peer.cmp(&b.peer)).then(a_seq.cmp(b_seq)));
        Ok(items.into_iter().map(|(item, _)| item).collect())
    }

    /// How many messages the inbox holds.
    ///
    /// # Errors
    /// A store failure.
    pub async fn inbox_len(&self) -> Result<u64, NodeError> {
        self.store.count().await.map_err(|e| NodeError::Store(e.to_string()))
    }

    /// Stops the event loop (which then closes the inbox). Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.requests.send(Request::Shutdown).await;
    }
}

/// The system's DNS settings (`/etc/resolv.conf`; `/etc/hosts` is read
/// first either way). Without them only the hosts file resolves names: a
/// machine with no resolver configured still starts.
fn dns_config() -> (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts) {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok(conf) => conf,
        Err(e) => {
            tracing::warn!("no DNS resolver configured ({e}); /dns addresses resolve from the hosts file only");
            (
                libp2p::dns::ResolverConfig::from_name_servers(Vec::new()),
                libp2p::dns::ResolverOpts::default(),
            )
        }
    }
}

/// Opens one stored envelope into an inbox item and its sender sequence number.
fn open_stored(keyring: &Keyring, purpose: Purpose, bytes: &[u8], via: &str) -> Option<(InboxItem, u64)> {
    match purpose {
        Purpose::Topic => {
            // A signed frame; rows stored before frames were signed hold a bare envelope.
            let (envelope, entry, payload) = [crate::signed::split(bytes).ok().map(|(e, _)| e), Some(bytes)]
                .into_iter()
                .flatten()
                .find_map(|b| {
                    let envelope = Envelope::decode(b).ok()?;
                    let entry = keyring.by_id(&envelope.topic_id)?;
                    let payload = envelope.open(&entry.key, Purpose::Topic, &entry.id).ok()?;
                    Some((envelope, entry, payload))
                })?;
            Some((
                InboxItem {
                    kind: "topic".into(),
                    topic: Some(entry.name.clone()),
                    from: payload.name,
                    peer: envelope.sender.to_string(),
                    to: None,
                    to_name: None,
                    msg: payload.body,
                    id: envelope.id(),
                    ts: envelope.ts,
                    via: via.into(),
                    cursor: String::new(),
                },
                payload.seq,
            ))
        }
        Purpose::DirectRecord => {
            let envelope = Envelope::decode(bytes).ok()?;
            let payload = envelope
                .open(keyring.local_key(), Purpose::DirectRecord, &[0; 32])
                .ok()?;
            let record: DmRecord = serde_json::from_str(&payload.body).ok()?;
            Some((
                InboxItem {
                    kind: "dm".into(),
                    topic: None,
                    from: payload.name,
                    peer: envelope.sender.to_string(),
                    to: record.to,
                    to_name: record.to_name,
                    msg: record.msg,
                    id: envelope.id(),
                    ts: envelope.ts,
                    via: via.into(),
                    cursor: String::new(),
                },
                payload.seq,
            ))
        }
        // Only in transit and in the outbox, never in the inbox.
        Purpose::Direct | Purpose::Control | Purpose::DirectControl => None,
    }
}
