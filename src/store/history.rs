//! A topic's history as catch-up reads it: the retention window, the ids a
//! node holds, and bounded pages after a cursor. The wire protocol that
//! carries these pages is `network::sync`; the types and limits are the
//! store's own.

use rusqlite::{params, OptionalExtension};

use super::thread::StoreThread;
use super::{HeldIds, Retention, StoreError};
use crate::envelope::Purpose;

/// Bytes of a message id sent in a catch-up request's "have" set.
pub const SHORT_ID_LEN: usize = 8;
/// Most envelopes in one page.
pub const MAX_PAGE_ENVELOPES: usize = 512;
/// Envelope bytes a page stops growing at (one more envelope may pass it).
pub const PAGE_BYTES: usize = 1024 * 1024;

/// A position in a topic's history: messages after (`ts`, `id`), in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    /// Sender timestamp, unix ms.
    pub ts: u64,
    /// Message id.
    pub id: [u8; 32],
}

impl Cursor {
    /// The opaque text form clients page with: the timestamp (16 hex
    /// digits, big-endian) then the id (64), so that texts sort as cursors do.
    pub fn to_hex(&self) -> String {
        format!("{:016x}{}", self.ts, hex::encode(self.id))
    }

    /// Parses [`Cursor::to_hex`]'s form.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 80 {
            return None;
        }
        let ts = u64::from_str_radix(text.get(..16)?, 16).ok()?;
        let id = hex::decode(text.get(16..)?).ok()?.try_into().ok()?;
        Some(Self { ts, id })
    }
}

/// The first bytes of a message id, as carried in a have set.
pub fn short_id(id: &[u8; 32]) -> [u8; SHORT_ID_LEN] {
    id[..SHORT_ID_LEN].try_into().expect("8 bytes")
}

/// What a sync page read found: envelopes not in the asker's set, and where to go on.
#[derive(Debug, Clone, Default)]
pub struct SyncPage {
    /// Sealed envelopes, in (ts, id) order.
    pub envelopes: Vec<Vec<u8>>,
    /// The last position examined.
    pub next: Cursor,
    /// Whether the page stopped before the end of the window.
    pub more: bool,
    /// How many of `envelopes` are topic messages (the rest are members'
    /// announcements, which catch-up carries so rosters converge).
    pub messages: u64,
}

/// What a peer catching up asks for: one page of a topic after a cursor.
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// The topic.
    pub topic_id: [u8; 32],
    /// Our retention window.
    pub retention: Retention,
    /// Unix ms now.
    pub now: u64,
    /// The asker's window start (unix ms).
    pub since: u64,
    /// Only messages after this position.
    pub after: Cursor,
    /// Short ids the asker holds: left out.
    pub have: std::collections::HashSet<[u8; SHORT_ID_LEN]>,
}

impl StoreThread {
    /// The oldest sender timestamp a sync exchange of this topic covers:
    /// inside the age limit, and no older than the topic's `max_messages`-th newest message.
    fn window_start(&self, topic_id: &[u8; 32], retention: Retention, now: u64) -> Result<u64, StoreError> {
        let by_age = now.saturating_sub(retention.max_age_ms);
        let nth: Option<i64> = self
            .conn
            .prepare_cached("SELECT ts FROM messages WHERE topic_id = ?1 ORDER BY ts DESC LIMIT 1 OFFSET ?2")?
            .query_row(
                params![&topic_id[..], retention.max_messages.saturating_sub(1) as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(by_age.max(nth.map_or(0, |t| t as u64)))
    }

    pub(super) fn sync_have(
        &self,
        topic_id: &[u8; 32],
        retention: Retention,
        now: u64,
    ) -> Result<(u64, HeldIds), StoreError> {
        let start = self.window_start(topic_id, retention, now)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ts, id FROM messages WHERE topic_id = ?1 AND ts >= ?2 ORDER BY ts, id LIMIT ?3")?;
        let rows = stmt.query_map(
            params![&topic_id[..], start as i64, retention.max_messages as i64],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (ts, id) = row?;
            if let Ok(id) = <[u8; 32]>::try_from(id) {
                out.push((ts as u64, id));
            }
        }
        Ok((start, out))
    }

    pub(super) fn sync_page(&self, q: &PageQuery) -> Result<SyncPage, StoreError> {
        let (topic_id, after, have) = (&q.topic_id, q.after, &q.have);
        let start = self.window_start(topic_id, q.retention, q.now)?.max(q.since);
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts, id, envelope, purpose FROM messages
             WHERE topic_id = ?1 AND ts >= ?2 AND (ts > ?3 OR (ts = ?3 AND id > ?4))
             ORDER BY ts, id",
        )?;
        let mut rows = stmt.query(params![&topic_id[..], start as i64, after.ts as i64, &after.id[..]])?;
        let mut page = SyncPage {
            next: after,
            ..SyncPage::default()
        };
        let mut bytes = 0;
        while let Some(row) = rows.next()? {
            if page.envelopes.len() >= MAX_PAGE_ENVELOPES || bytes >= PAGE_BYTES {
                page.more = true;
                break;
            }
            let ts = row.get::<_, i64>(0)? as u64;
            let Ok(id) = <[u8; 32]>::try_from(row.get::<_, Vec<u8>>(1)?) else {
                continue;
            };
            page.next = Cursor { ts, id };
            if !have.contains(&short_id(&id)) {
                let envelope: Vec<u8> = row.get(2)?;
                bytes += envelope.len();
                page.envelopes.push(envelope);
                if row.get::<_, u8>(3)? == Purpose::Topic as u8 {
                    page.messages += 1;
                }
            }
        }
        Ok(page)
    }
}
