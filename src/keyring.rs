//! The node's secrets on disk: its ed25519 identity and the keyring of topic
//! keys and the local inbox key, read and written through a
//! [`Vault`] (mode 0600 in a 0700 data dir, sealed under a passphrase when
//! there is one). Topic secrets themselves are never written, only the keys
//! derived from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use crate::crypto::{Key, TopicKeys};
use crate::vault::{Vault, VaultError};

/// File name of the identity key inside the data dir.
pub const IDENTITY_FILE: &str = "identity.key";
/// File name of the keyring inside the data dir.
pub const KEYRING_FILE: &str = "keyring.json";

/// The files [`crate::vault::Vault`] protects.
pub const SECRET_FILES: [&str; 2] = [IDENTITY_FILE, KEYRING_FILE];

/// Failures while reading or writing the node's key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// A file could not be read, written, unsealed, or is readable by others.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A key file exists but is not valid.
    #[error("{path}: corrupt key file: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Loads the node's identity from `dir` through `vault`, creating it on first start.
///
/// # Errors
/// [`VaultError::TooOpen`] when the key file is readable by group or others
/// (as ssh refuses such keys), or when it is unreadable, does not unseal or is corrupt.
pub fn load_or_create_identity(dir: &Path, vault: &Vault) -> Result<Keypair, KeyringError> {
    let path = dir.join(IDENTITY_FILE);
    match vault.read(&path)? {
        Some(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeyringError::Corrupt {
            path,
            reason: e.to_string(),
        }),
        None => {
            let keypair = Keypair::generate_ed25519();
            let bytes = Zeroizing::new(keypair.to_protobuf_encoding().expect("ed25519 keys encode"));
            vault.write(&path, &bytes)?;
            Ok(keypair)
        }
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
    /// Whether the node is subscribed now. Keys of left topics (and of a
    /// topic's earlier epochs) are kept so their inbox messages stay readable.
    pub subscribed: bool,
    /// The topic's epoch these keys belong to: 0 for the keys derived from
    /// the typed secret, then one more at each rekey.
    #[serde(default)]
    pub epoch: u32,
    /// Peer ids removed from the topic up to this epoch.
    #[serde(default)]
    pub removed: Vec<String>,
}

impl TopicEntry {
    fn new(name: &str, keys: &TopicKeys, open: bool, subscribed: bool) -> Self {
        Self {
            name: name.to_owned(),
            id: keys.id,
            key: keys.key,
            open,
            subscribed,
            epoch: 0,
            removed: Vec::new(),
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
    vault: Vault,
    local_key: Key,
    /// Topics by id. Several entries may share a name (a topic re-keyed with a
    /// new secret); at most one of them is subscribed.
    topics: BTreeMap<[u8; 32], TopicEntry>,
}

impl Keyring {
    /// Loads the keyring from `dir` through `vault`, creating it (with a
    /// fresh local key) on first start.
    ///
    /// # Errors
    /// When the file is unreadable, does not unseal or is corrupt, or cannot be created.
    pub fn load_or_create(dir: &Path, vault: Vault) -> Result<Self, KeyringError> {
        let path = dir.join(KEYRING_FILE);
        match vault.read(&path)? {
            Some(bytes) => {
                let file: KeyringFile = serde_json::from_slice(&bytes).map_err(|e| KeyringError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok(Self {
                    path,
                    vault,
                    local_key: file.local_key,
                    topics: file.topics.into_iter().map(|t| (t.id, t)).collect(),
                })
            }
            None => {
                let mut local_key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut local_key);
                let keyring = Self {
                    path,
                    vault,
                    local_key,
                    topics: BTreeMap::new(),
                };
                keyring.save()?;
                Ok(keyring)
            }
        }
    }

    fn save(&self) -> Result<(), KeyringError> {
        let file = KeyringFile {
            local_key: self.local_key,
            topics: self.topics.values().cloned().collect(),
        };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("keyring serializes"));
        Ok(self.vault.write(&self.path, &json)?)
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

    /// Records a subscription to `epoch` of a topic (from a rekey or an
    /// invitation), with the peers removed so far, leaving every other epoch
    /// of the name (kept, so its messages stay readable), and saves.
    ///
    /// # Errors
    /// When the keyring cannot be written; the in-memory state is then unchanged.
    pub fn join_epoch(
        &mut self,
        name: &str,
        keys: &TopicKeys,
        epoch: u32,
        removed: Vec<String>,
    ) -> Result<(), KeyringError> {
        let before = self.topics.clone();
        for t in self.topics.values_mut().filter(|t| t.name == name) {
            t.subscribed = false;
        }
        let mut entry = TopicEntry::new(name, keys, false, true);
        entry.epoch = epoch;
        entry.removed = removed;
        self.topics.insert(keys.id, entry);
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
    use std::fs;

    #[test]
    fn identity_persists_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::unprotected();
        let a = load_or_create_identity(dir.path(), &vault).unwrap();
        let b = load_or_create_identity(dir.path(), &vault).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(IDENTITY_FILE);
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_or_create_identity(dir.path(), &vault).unwrap_err();
            assert!(matches!(err, KeyringError::Vault(VaultError::TooOpen { .. })), "{err}");
            assert!(err.to_string().contains("chmod 600"));
        }
    }

    #[test]
    fn keyring_persists_keys_not_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Keyring::load_or_create(dir.path(), Vault::unprotected()).unwrap();
        let keys = TopicKeys::derive("news", "hunter2-secret");
        k.subscribe("news", &keys, false).unwrap();
        let local = *k.local_key();
        let k2 = Keyring::load_or_create(dir.path(), Vault::unprotected()).unwrap();
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

    #[test]
    fn a_sealed_keyring_holds_no_key_in_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let passphrase = crate::vault::Passphrase::new("a long passphrase".into(), "in a test").unwrap();
        let (vault, _) = Vault::open(dir.path(), Some(&passphrase), &SECRET_FILES).unwrap();
        let identity = load_or_create_identity(dir.path(), &vault).unwrap();
        let mut k = Keyring::load_or_create(dir.path(), vault.clone()).unwrap();
        let keys = TopicKeys::derive("newsroom", "hunter2-secret");
        k.subscribe("newsroom", &keys, false).unwrap();
        let secret_key = identity.clone().try_into_ed25519().unwrap().secret();
        let (local_hex, key_hex) = (hex::encode(k.local_key()), hex::encode(keys.key));
        let needles: [&[u8]; 6] = [
            k.local_key(),
            local_hex.as_bytes(),
            &keys.key,
            key_hex.as_bytes(),
            b"newsroom",
            secret_key.as_ref(),
        ];
        for name in SECRET_FILES {
            let bytes = fs::read(dir.path().join(name)).unwrap();
            for needle in needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{name} holds a secret"
                );
            }
        }
        // Read back through the same vault (the key is derived once per start).
        assert_eq!(
            load_or_create_identity(dir.path(), &vault).unwrap().public(),
            identity.public()
        );
        let k2 = Keyring::load_or_create(dir.path(), vault).unwrap();
        assert_eq!(k2.local_key(), k.local_key());
        assert_eq!(k2.topic("newsroom").unwrap().keys(), keys);
    }
}
