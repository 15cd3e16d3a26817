//! The node's secrets on disk: its ed25519 identity and the keyring of topic
//! keys and the local inbox key. Files are written atomically with mode 0600
//! inside a 0700 data directory; topic secrets themselves are never written,
//! only the keys derived from them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::{Key, TopicKeys};

/// File name of the identity key inside the data dir.
pub const IDENTITY_FILE: &str = "identity.key";
/// File name of the keyring inside the data dir.
pub const KEYRING_FILE: &str = "keyring.json";

/// Failures while reading or writing the node's key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file exists but is not valid.
    #[error("{path}: corrupt key file: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key file can be read by other users.
    #[error("{path}: permissions {mode:o} are too open; the private key must not be readable by others\nhint: chmod 600 {path}")]
    TooOpen {
        /// The file concerned.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and parents) if needed and makes it private (0700).
///
/// # Errors
/// When the directory cannot be created or its mode set.
pub fn ensure_private_dir(dir: &Path) -> Result<(), KeyringError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    set_mode(dir, 0o700)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), KeyringError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
    }
    let _ = (path, mode);
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename) with mode 0600.
///
/// # Errors
/// When any step of the write fails; the old file is then left as it was.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyringError> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    set_mode(&tmp, 0o600)?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Loads the node's identity from `dir`, creating it on first start.
///
/// # Errors
/// [`KeyringError::TooOpen`] when the key file is readable by group or others
/// (as ssh refuses such keys), or when it is unreadable or corrupt.
pub fn load_or_create_identity(dir: &Path) -> Result<Keypair, KeyringError> {
    let path = dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(&path).map_err(io_err(&path))?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyringError::TooOpen { path, mode });
                }
            }
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeyringError::Corrupt {
                path,
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair.to_protobuf_encoding().expect("ed25519 keys encode");
            write_private(&path, &bytes)?;
            Ok(keypair)
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// One topic the node knows the keys of.
#[derive(Clone, Serialize, Deserialize)]
pub struct TopicEntry {
    /// The topic name as the user typed it.
    pub name: String,
    /// Hex topic id.
    #[serde(with = "hex::serde")]
    pub id: [u8; 32],
    /// Hex topic key.
    #[serde(with = "hex::serde")]
    pub key: Key,
    /// Whether the secret was the name itself (anyone who knows the name can read).
    pub open: bool,
    /// Whether the node is subscribed now. Keys of left topics are kept so
    /// their inbox messages stay readable.
    pub subscribed: bool,
}

impl TopicEntry {
    fn new(name: &str, keys: &TopicKeys, open: bool, subscribed: bool) -> Self {
        Self {
            name: name.to_owned(),
            id: keys.id,
            key: keys.key,
            open,
            subscribed,
        }
    }

    /// The derived keys of this topic.
    pub fn keys(&self) -> TopicKeys {
        TopicKeys {
            id: self.id,
            key: self.key,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    #[serde(with = "hex::serde")]
    local_key: Key,
    topics: Vec<TopicEntry>,
}

/// The topic keys and local key of a node, persisted in `keyring.json`.
pub struct Keyring {
    path: PathBuf,
    local_key: Key,
    /// Topics by id. Several entries may share a name (a topic re-keyed with a
    /// new secret); at most one of them is subscribed.
    topics: BTreeMap<[u8; 32], TopicEntry>,
}

impl Keyring {
    /// Loads the keyring from `dir`, creating it (with a fresh local key) on first start.
    ///
    /// # Errors
    /// When the file is unreadable or corrupt, or cannot be created.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyringError> {
        let path = dir.join(KEYRING_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let file: KeyringFile = serde_json::from_slice(&bytes).map_err(|e| KeyringError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok(Self {
                    path,
                    local_key: file.local_key,
                    topics: file.topics.into_iter().map(|t| (t.id, t)).collect(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut local_key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut local_key);
                let keyring = Self {
                    path,
                    local_key,
                    topics: BTreeMap::new(),
                };
                keyring.save()?;
                Ok(keyring)
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn save(&self) -> Result<(), KeyringError> {
        let file = KeyringFile {
            local_key: self.local_key,
            topics: self.topics.values().cloned().collect(),
        };
        write_private(
            &self.path,
            &serde_json::to_vec_pretty(&file).expect("keyring serializes"),
        )
    }

    /// The key that seals direct-message records in the local inbox.
    pub fn local_key(&self) -> &Key {
        &self.local_key
    }

    /// Records a subscription (leaving any other key of the same name, whose
    /// entry is kept so its messages stay readable) and saves.
    ///
    /// # Errors
    /// When the keyring cannot be written; the in-memory state is then unchanged.
    pub fn subscribe(&mut self, name: &str, keys: &TopicKeys, open: bool) -> Result<(), KeyringError> {
        let before = self.topics.clone();
        for t in self.topics.values_mut().filter(|t| t.name == name) {
            t.subscribed = false;
        }
        self.topics.insert(keys.id, TopicEntry::new(name, keys, open, true));
        self.save().inspect_err(|_| self.topics = before)
    }

    /// Records the keys of a topic without subscribing (publishing to an open
    /// topic one has not joined); saves only when the entry is new.
    ///
    /// # Errors
    /// When the keyring cannot be written.
    pub fn remember(&mut self, name: &str, keys: &TopicKeys, open: bool) -> Result<(), KeyringError> {
        if self.topics.contains_key(&keys.id) {
            return Ok(());
        }
        self.topics.insert(keys.id, TopicEntry::new(name, keys, open, false));
        self.save().inspect_err(|_| {
            self.topics.remove(&keys.id);
        })
    }

    /// Marks a topic as left (its keys stay, for reading the inbox) and saves.
    ///
    /// # Errors
    /// When the keyring cannot be written.
    pub fn unsubscribe(&mut self, name: &str) -> Result<bool, KeyringError> {
        let Some(t) = self.topics.values_mut().find(|t| t.subscribed && t.name == name) else {
            return Ok(false);
        };
        t.subscribed = false;
        self.save()?;
        Ok(true)
    }

    /// The subscribed entry of a topic name, if any.
    pub fn topic(&self, name: &str) -> Option<&TopicEntry> {
        self.subscribed().find(|t| t.name == name)
    }

    /// The entry of a topic id.
    pub fn by_id(&self, id: &[u8; 32]) -> Option<&TopicEntry> {
        self.topics.get(id)
    }

    /// Topics the node is subscribed to, by name.
    pub fn subscribed(&self) -> impl Iterator<Item = &TopicEntry> {
        self.topics.values().filter(|t| t.subscribed)
    }

    /// Every topic the node has keys for.
    pub fn all(&self) -> impl Iterator<Item = &TopicEntry> {
        self.topics.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_identity(dir.path()).unwrap();
        let b = load_or_create_identity(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(IDENTITY_FILE);
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_or_create_identity(dir.path()).unwrap_err();
            assert!(matches!(err, KeyringError::TooOpen { .. }), "{err}");
            assert!(err.to_string().contains("chmod 600"));
        }
    }

    #[test]
    fn keyring_persists_keys_not_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Keyring::load_or_create(dir.path()).unwrap();
        let keys = TopicKeys::derive("news", "hunter2-secret");
        k.subscribe("news", &keys, false).unwrap();
        let local = *k.local_key();
        let k2 = Keyring::load_or_create(dir.path()).unwrap();
        assert_eq!(k2.local_key(), &local);
        assert_eq!(k2.topic("news").unwrap().keys(), keys);
        // Re-keying keeps the old entry for reading, subscribed to the new one only.
        let mut k2 = k2;
        let rekeyed = TopicKeys::derive("news", "new-secret");
        k2.subscribe("news", &rekeyed, false).unwrap();
        assert_eq!(k2.topic("news").unwrap().keys(), rekeyed);
        assert!(k2.by_id(&keys.id).is_some());
        assert_eq!(k2.subscribed().count(), 1);
        let text = fs::read_to_string(dir.path().join(KEYRING_FILE)).unwrap();
        assert!(!text.contains("hunter2-secret"));
        let mut k3 = k2;
        assert!(k3.unsubscribe("news").unwrap());
        assert!(!k3.unsubscribe("news").unwrap());
        assert_eq!(k3.subscribed().count(), 0);
        assert!(k3.topic("news").is_none());
        assert!(k3.by_id(&keys.id).is_some());
    }
}
