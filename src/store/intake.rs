//! The intake log: where a topic message lands first, with one `write`,
//! (one per group that arrives together) before it moves into SQLite in a
//! group of many.
//!
//! A commit of one message to SQLite writes three 4 KiB WAL frames (the
//! table's leaf and a leaf of each index) for half a kilobyte of message,
//! and twenty nodes on one disk checkpointing those frames were most of the
//! 20-node tail (docs/performance.md). Appended here, a message costs one
//! write of its own size; once the log holds [`MAX_RECORDS`] messages (or
//! the store has anything else to do, or goes idle) they are inserted in one
//! transaction, whose frames are shared by the whole group, and the log
//! starts over.
//!
//! The promise is the one of `synchronous=NORMAL` (docs/security.md): the
//! write is in the kernel before the message is reported, so a killed
//! process loses nothing it reported; a power cut may lose the last
//! messages, which catch-up refills. A node that stops without moving its
//! log into SQLite replays it at its next start.
//!
//! Format: a 16-byte header (`MAGIC`, then a random salt), then records,
//! each `len: u32 LE`, `check: 8 bytes`, `body: len bytes`, where `check` is
//! the first 8 bytes of SHA-256(salt ‖ len ‖ body). Starting over writes a
//! new salt, so the records of earlier rounds that follow no longer check
//! and replay stops at the first of them (as at a torn last record).

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// File name of the intake log inside the data dir.
pub const INTAKE_FILE: &str = "inbox.intake";
/// Messages the log holds before they move into SQLite.
pub(super) const MAX_RECORDS: usize = 64;
/// Bytes of records the log holds before they move into SQLite (and the
/// most one group may bring, so that the file stays under twice this).
pub(super) const MAX_BYTES: u64 = 256 * 1024;
const MAGIC: &[u8; 8] = b"murmurIL";
const HEADER_LEN: u64 = 16;
/// `len` and `check` before each body.
const RECORD_HEAD: usize = 12;
/// The fixed part of a body: ts, id, purpose, topic id, via, flags.
const BODY_FIXED: usize = 8 + 32 + 1 + 32 + 1 + 1;
const HAS_SEQ: u8 = 1;
const HAS_CLIENT_KEY: u8 = 2;

/// One message as the log (and then SQLite) keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub ts: u64,
    pub id: [u8; 32],
    pub purpose: u8,
    pub topic_id: [u8; 32],
    pub via: u8,
    /// Our own next sequence number, for a message of ours.
    pub own_seq: Option<u64>,
    /// The client key of an idempotent publish.
    pub client_key: Option<[u8; 32]>,
    pub envelope: Vec<u8>,
}

impl Record {
    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.id);
        out.push(self.purpose);
        out.extend_from_slice(&self.topic_id);
        out.push(self.via);
        let flags = u8::from(self.own_seq.is_some()) * HAS_SEQ + u8::from(self.client_key.is_some()) * HAS_CLIENT_KEY;
        out.push(flags);
        if let Some(seq) = self.own_seq {
            out.extend_from_slice(&seq.to_le_bytes());
        }
        if let Some(key) = &self.client_key {
            out.extend_from_slice(key);
        }
        out.extend_from_slice(&self.envelope);
    }

    fn decode_body(body: &[u8]) -> Option<Self> {
        let (fixed, mut rest) = body.split_at_checked(BODY_FIXED)?;
        let ts = u64::from_le_bytes(fixed[..8].try_into().ok()?);
        let id = fixed[8..40].try_into().ok()?;
        let purpose = fixed[40];
        let topic_id = fixed[41..73].try_into().ok()?;
        let via = fixed[73];
        let flags = fixed[74];
        let mut own_seq = None;
        if flags & HAS_SEQ != 0 {
            let (seq, tail) = rest.split_at_checked(8)?;
            own_seq = Some(u64::from_le_bytes(seq.try_into().ok()?));
            rest = tail;
        }
        let mut client_key = None;
        if flags & HAS_CLIENT_KEY != 0 {
            let (key, tail) = rest.split_at_checked(32)?;
            client_key = Some(key.try_into().ok()?);
            rest = tail;
        }
        Some(Self {
            ts,
            id,
            purpose,
            topic_id,
            via,
            own_seq,
            client_key,
            envelope: rest.to_vec(),
        })
    }
}

fn check(salt: &[u8; 8], len: &[u8; 4], body: &[u8]) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(len)
        .chain_update(body)
        .finalize();
    digest[..8].try_into().expect("a SHA-256 digest has 8 bytes")
}

/// The open log and the messages it holds that SQLite does not yet.
pub(super) struct Intake {
    file: File,
    salt: [u8; 8],
    /// Where the next record goes (the file's cursor is there).
    end: u64,
    /// The records since the log last started over, in order.
    pending: Vec<Record>,
    /// (ts, id) of `pending`, for duplicates.
    keys: HashSet<(u64, [u8; 32])>,
    buf: Vec<u8>,
}

impl Intake {
    /// Opens the log at `path` (creating it, mode 0600). The records a
    /// previous run left in it are [`Intake::pending`] (oldest first), and
    /// stay valid in the file until the caller has put them into SQLite and
    /// called [`Intake::restart`].
    pub(super) fn open(path: &Path) -> std::io::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut intake = Self {
            file,
            salt: [0; 8],
            end: HEADER_LEN,
            pending: Vec::new(),
            keys: HashSet::new(),
            buf: Vec::new(),
        };
        match read_records(&bytes) {
            Some((salt, records, end)) => {
                intake.salt = salt;
                intake.end = end as u64;
                intake.file.seek(SeekFrom::Start(intake.end))?;
                intake.keys = records.iter().map(|r| (r.ts, r.id)).collect();
                intake.pending = records;
            }
            None => intake.restart()?,
        }
        Ok(intake)
    }

    /// Whether the log holds nothing that SQLite lacks.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether the log is full: its records should move into SQLite.
    pub(super) fn is_full(&self) -> bool {
        self.pending.len() >= MAX_RECORDS || self.end >= MAX_BYTES
    }

    /// Whether the log holds the message (ts, id).
    pub(super) fn holds(&self, ts: u64, id: &[u8; 32]) -> bool {
        self.keys.contains(&(ts, *id))
    }

    /// Appends `records` with one write. On an error nothing is held and
    /// the records come back, for the caller to commit to SQLite instead.
    pub(super) fn append(&mut self, records: Vec<Record>) -> Result<(), (std::io::Error, Vec<Record>)> {
        if records.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.write(&records) {
            return Err((e, records));
        }
        for record in records {
            self.keys.insert((record.ts, record.id));
            self.pending.push(record);
        }
        Ok(())
    }

    fn write(&mut self, records: &[Record]) -> std::io::Result<()> {
        self.buf.clear();
        for record in records {
            let at = self.buf.len();
            self.buf.extend_from_slice(&[0; RECORD_HEAD]);
            record.encode_body(&mut self.buf);
            let len = u32::try_from(self.buf.len() - at - RECORD_HEAD)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "record too large"))?
                .to_le_bytes();
            let check = check(&self.salt, &len, &self.buf[at + RECORD_HEAD..]);
            self.buf[at..at + 4].copy_from_slice(&len);
            self.buf[at + 4..at + RECORD_HEAD].copy_from_slice(&check);
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            // Put the cursor back where the next record belongs.
            self.file.seek(SeekFrom::Start(self.end))?;
            return Err(e);
        }
        self.end += self.buf.len() as u64;
        Ok(())
    }

    /// The records SQLite lacks, oldest first.
    pub(super) fn pending(&self) -> &[Record] {
        &self.pending
    }

    /// Starts the log over once SQLite holds its records: a new salt in the
    /// header makes every record after it stale.
    pub(super) fn restart(&mut self) -> std::io::Result<()> {
        let salt: [u8; 8] = rand::random();
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&salt);
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&header)?;
        self.salt = salt;
        self.end = HEADER_LEN;
        self.pending.clear();
        self.keys.clear();
        Ok(())
    }
}

/// A log's salt, its valid records up to the first that does not check,
/// and where they end; `None` when the bytes are not a log.
fn read_records(bytes: &[u8]) -> Option<([u8; 8], Vec<Record>, usize)> {
    let header = bytes.get(..HEADER_LEN as usize)?;
    if &header[..8] != MAGIC {
        return None;
    }
    let salt: [u8; 8] = header[8..].try_into().expect("8 bytes");
    let mut out = Vec::new();
    let mut at = HEADER_LEN as usize;
    while let Some(head) = bytes.get(at..at + RECORD_HEAD) {
        let len: [u8; 4] = head[..4].try_into().expect("4 bytes");
        let n = u32::from_le_bytes(len) as usize;
        let Some(body) = bytes.get(at + RECORD_HEAD..at + RECORD_HEAD + n) else {
            break;
        };
        if head[4..] != check(&salt, &len, body) {
            break;
        }
        let Some(record) = Record::decode_body(body) else {
            break;
        };
        out.push(record);
        at += RECORD_HEAD + n;
    }
    Some((salt, out, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8, extras: bool) -> Record {
        Record {
            ts: 1_700_000_000_000 + u64::from(n),
            id: [n; 32],
            purpose: 1,
            topic_id: [7; 32],
            via: 1,
            own_seq: extras.then_some(u64::from(n) + 100),
            client_key: extras.then_some([n ^ 0xff; 32]),
            envelope: vec![n; 300 + usize::from(n)],
        }
    }

    fn records(bytes: &[u8]) -> Vec<Record> {
        read_records(bytes).map(|(_, r, _)| r).unwrap_or_default()
    }

    #[test]
    fn records_left_in_the_log_come_back_at_the_next_open_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INTAKE_FILE);
        let mut log = Intake::open(&path).unwrap();
        assert!(log.is_empty());
        let written: Vec<Record> = (0..5).map(|n| record(n, n % 2 == 0)).collect();
        // Three in one write, as a group arrives.
        log.append(written[..3].to_vec()).map_err(|(e, _)| e).unwrap();
        assert!(log.holds(written[1].ts, &written[1].id));
        assert!(!log.holds(written[1].ts + 1, &written[1].id));
        drop(log);
        // Reopened: they are pending, and held, until a restart; new ones follow them.
        let mut log = Intake::open(&path).unwrap();
        assert_eq!(log.pending(), &written[..3]);
        assert!(log.holds(written[2].ts, &written[2].id));
        for r in &written[3..] {
            log.append(vec![r.clone()]).map_err(|(e, _)| e).unwrap();
        }
        drop(log);
        assert_eq!(Intake::open(&path).unwrap().pending(), &written[..]);
    }

    #[test]
    fn a_restart_makes_the_records_before_it_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INTAKE_FILE);
        let mut log = Intake::open(&path).unwrap();
        for n in 0..4 {
            log.append(vec![record(n, false)]).map_err(|(e, _)| e).unwrap();
        }
        log.restart().unwrap();
        assert!(log.is_empty());
        assert!(!log.holds(record(0, false).ts, &record(0, false).id));
        // A shorter round over the longer one: the old records after it stay in the file.
        log.append(vec![record(9, true)]).map_err(|(e, _)| e).unwrap();
        drop(log);
        let mut log = Intake::open(&path).unwrap();
        assert_eq!(log.pending(), &[record(9, true)]);
        log.restart().unwrap();
        drop(log);
        assert!(Intake::open(&path).unwrap().is_empty());
    }

    #[test]
    fn a_torn_or_altered_record_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INTAKE_FILE);
        let mut log = Intake::open(&path).unwrap();
        for n in 0..3 {
            log.append(vec![record(n, false)]).map_err(|(e, _)| e).unwrap();
        }
        drop(log);
        let full = std::fs::read(&path).unwrap();
        // Torn: the last record's last bytes never reached the disk.
        assert_eq!(
            records(&full[..full.len() - 10]),
            vec![record(0, false), record(1, false)]
        );
        // Altered: a byte of the second record's envelope flipped.
        let mut altered = full.clone();
        let second = HEADER_LEN as usize + RECORD_HEAD + BODY_FIXED + 300 + RECORD_HEAD + BODY_FIXED + 5;
        altered[second] ^= 1;
        assert_eq!(records(&altered), vec![record(0, false)]);
        // Not a log at all: opening it starts a new one.
        std::fs::write(&path, b"some other file entirely").unwrap();
        assert!(Intake::open(&path).unwrap().is_empty());
        assert_eq!(records(&std::fs::read(&path).unwrap()), vec![]);
    }

    #[test]
    fn the_log_is_full_after_max_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Intake::open(&dir.path().join(INTAKE_FILE)).unwrap();
        for n in 0..MAX_RECORDS {
            assert!(!log.is_full());
            log.append(vec![record(n as u8, false)]).map_err(|(e, _)| e).unwrap();
        }
        assert!(log.is_full());
        assert_eq!(log.pending().len(), MAX_RECORDS);
    }
}
