//! The inbox's reads (besides catch-up's, in `history.rs`): pages of the
//! inbox as `/inbox` and the API show them, with what the intake log still
//! holds when moving it failed; the outbox and the rosters loaded at start;
//! and which epochs hold our own announcement.

use rusqlite::params;

use super::thread::StoreThread;
use super::{InboxQuery, Member, OutboxRow, Rosters, StoreError, StoredMessage, Via};
use crate::envelope::Purpose;

impl StoreThread {
    pub(super) fn announced(&self, topic_ids: Vec<[u8; 32]>) -> Result<Vec<[u8; 32]>, StoreError> {
        // The topic's index finds its rows; the first control row written
        // here ends the search.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM messages WHERE topic_id = ?1 AND purpose = ?2 AND via = ?3 LIMIT 1")?;
        let mut out = Vec::new();
        for id in topic_ids {
            if stmt.exists(params![&id[..], Purpose::Control as u8, Via::Local as u8])? {
                out.push(id);
            }
        }
        Ok(out)
    }

    pub(super) fn members_load(&self) -> Result<Rosters, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT topic_id, peer, name FROM members")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (topic_id, peer, name) = row?;
            if let Ok(topic_id) = <[u8; 32]>::try_from(topic_id) {
                out.push((
                    topic_id,
                    Member {
                        peer,
                        name,
                        event: None,
                    },
                ));
            }
        }
        Ok(out)
    }

    pub(super) fn query(&self, q: &InboxQuery) -> Result<Vec<StoredMessage>, StoreError> {
        let mut sql = format!(
            "SELECT id, purpose, ts, envelope, via FROM messages WHERE ts >= ?1 AND purpose IN ({}, {})",
            Purpose::Topic as u8,
            Purpose::DirectRecord as u8
        );
        let mut values: Vec<rusqlite::types::Value> = vec![(q.since.unwrap_or(0) as i64).into()];
        if let Some(topics) = &q.topics {
            if topics.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(" AND topic_id IN (");
            sql.push_str(&vec!["?"; topics.len()].join(","));
            sql.push(')');
            for t in topics {
                values.push(t.to_vec().into());
            }
        }
        for (cursor, op) in [(q.before, "<"), (q.after, ">")] {
            if let Some(c) = cursor {
                sql.push_str(&format!(" AND (ts, id) {op} (?, ?)"));
                values.push((c.ts as i64).into());
                values.push(c.id.to_vec().into());
            }
        }
        // Walking forward: the oldest after the cursor; otherwise the newest.
        let forward = q.after.is_some() && q.before.is_none();
        sql.push_str(if forward {
            " ORDER BY ts, id LIMIT "
        } else {
            " ORDER BY ts DESC, id DESC LIMIT "
        });
        sql.push_str(&q.limit.to_string());
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            let id: Vec<u8> = r.get(0)?;
            let purpose: u8 = r.get(1)?;
            Ok((
                id,
                purpose,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, u8>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, purpose, ts, envelope, via) = row?;
            let (Ok(id), Some(purpose)) = (<[u8; 32]>::try_from(id), Purpose::from_byte(purpose)) else {
                tracing::warn!("skipping a malformed inbox row");
                continue;
            };
            out.push(StoredMessage {
                id,
                purpose,
                ts: ts as u64,
                envelope,
                via: Via::from_byte(via),
            });
        }
        if !forward {
            out.reverse();
        }
        self.add_unmoved(q, &mut out, forward);
        Ok(out)
    }

    /// Adds to a query's rows (oldest first) the messages the intake log
    /// still holds because moving them into SQLite failed (a full disk):
    /// they were reported, so the inbox shows them.
    fn add_unmoved(&self, q: &InboxQuery, out: &mut Vec<StoredMessage>, forward: bool) {
        let unmoved = self.intake.pending().iter().filter(|r| {
            Purpose::from_byte(r.purpose).is_some_and(Purpose::is_shown)
                && r.ts >= q.since.unwrap_or(0)
                && q.topics.as_ref().is_none_or(|t| t.contains(&r.topic_id))
                && q.before.is_none_or(|c| (r.ts, r.id) < (c.ts, c.id))
                && q.after.is_none_or(|c| (r.ts, r.id) > (c.ts, c.id))
        });
        let before = out.len();
        out.extend(unmoved.map(|r| StoredMessage {
            id: r.id,
            purpose: Purpose::from_byte(r.purpose).unwrap_or(Purpose::Topic),
            ts: r.ts,
            envelope: r.envelope.clone(),
            via: Via::from_byte(r.via),
        }));
        if out.len() == before {
            return;
        }
        out.sort_by_key(|m| (m.ts, m.id));
        let extra = out.len().saturating_sub(q.limit);
        if forward {
            out.truncate(q.limit);
        } else {
            out.drain(..extra);
        }
    }

    pub(super) fn outbox_load(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, peer, ts, expires, attempts, last_error, envelope FROM outbox ORDER BY ts, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                OutboxRow {
                    id: [0; 32],
                    peer: r.get(1)?,
                    ts: r.get::<_, i64>(2)? as u64,
                    expires: r.get::<_, i64>(3)? as u64,
                    attempts: r.get(4)?,
                    last_error: r.get(5)?,
                    envelope: r.get(6)?,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, row) = row?;
            if let Ok(id) = <[u8; 32]>::try_from(id) {
                out.push(OutboxRow { id, ..row });
            }
        }
        Ok(out)
    }
}
