//! The control messages of topic membership (pure: types and their JSON
//! form). They travel sealed like any other message: a member's
//! announcement in the topic itself (`Purpose::Control`, under the topic
//! key), the others end to end between two members (`Purpose::DirectControl`,
//! under their pair key). docs/protocol.md, "Membership".

use serde::{Deserialize, Serialize};

use crate::crypto::{Key, TopicKeys};

/// The keys of one epoch of a topic, as carried in a rekey or an invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochKeys {
    /// The epoch: 0 for the keys derived from the typed secret, then 1, 2…
    pub epoch: u32,
    /// The epoch's topic id.
    #[serde(with = "hex::serde")]
    pub id: [u8; 32],
    /// The epoch's topic key.
    #[serde(with = "hex::serde")]
    pub key: Key,
}

impl EpochKeys {
    /// The keys as the rest of the node uses them.
    pub fn keys(&self) -> TopicKeys {
        TopicKeys {
            id: self.id,
            key: self.key,
        }
    }
}

/// A control message in a topic (`Purpose::Control`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopicControl {
    /// The author is a member of this epoch of the topic (sent when it joins).
    Member,
}

/// A control message from one member to another (`Purpose::DirectControl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectControl {
    /// The topic moves to a new epoch: its keys, the epoch it replaces, and
    /// the peers removed (who are not sent it).
    Rekey {
        /// Topic name.
        topic: String,
        /// The topic id of the epoch this one replaces.
        #[serde(with = "hex::serde")]
        prev: [u8; 32],
        /// The new epoch.
        keys: EpochKeys,
        /// Peer ids removed from the topic, in this rekey and earlier ones.
        removed: Vec<String>,
    },
    /// Join the topic at this epoch.
    Invite {
        /// Topic name.
        topic: String,
        /// The current epoch.
        keys: EpochKeys,
        /// Peer ids removed from the topic so far.
        removed: Vec<String>,
    },
    /// The sender holds this epoch of the topic: if there is a newer one,
    /// and the sender is a member who was not removed, send it.
    KeyRequest {
        /// Topic name.
        topic: String,
        /// The sender's current topic id.
        #[serde(with = "hex::serde")]
        id: [u8; 32],
        /// The sender's current epoch.
        epoch: u32,
    },
}

impl DirectControl {
    /// The JSON body sealed into the envelope.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("control messages serialize")
    }

    /// Parses a body. `None` for anything else.
    pub fn from_body(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }

    /// What `/pending` shows for it (never a key).
    pub fn describe(&self) -> String {
        match self {
            Self::Rekey { topic, keys, .. } => format!("(rekey of {topic} to epoch {})", keys.epoch),
            Self::Invite { topic, keys, .. } => format!("(invitation to {topic}, epoch {})", keys.epoch),
            Self::KeyRequest { topic, epoch, .. } => format!("(asking for {topic} after epoch {epoch})"),
        }
    }
}

impl TopicControl {
    /// The JSON body sealed into the envelope.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("control messages serialize")
    }

    /// Parses a body. `None` for anything else.
    pub fn from_body(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

/// Of two epochs with the same number (two members rekeyed at once), the one
/// every member keeps: the smaller topic id. Every node applies the same rule,
/// so all converge on one epoch whatever order the rekeys arrive in.
pub fn wins(candidate: &EpochKeys, current: &EpochKeys) -> bool {
    candidate.epoch > current.epoch || (candidate.epoch == current.epoch && candidate.id < current.id)
}

/// Fresh keys for epoch `epoch` of topic `name`: derived as a topic's are
/// (`TopicKeys::derive`), from 32 random bytes in place of the typed secret.
pub fn new_epoch(name: &str, epoch: u32) -> EpochKeys {
    use rand::RngCore;
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let keys = TopicKeys::derive(name, &hex::encode(secret));
    EpochKeys {
        epoch,
        id: keys.id,
        key: keys.key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_junk_is_not_one() {
        let keys = new_epoch("news", 1);
        let rekey = DirectControl::Rekey {
            topic: "news".into(),
            prev: [1; 32],
            keys: keys.clone(),
            removed: vec!["12D3KooWX".into()],
        };
        assert_eq!(DirectControl::from_body(&rekey.to_body()), Some(rekey.clone()));
        assert!(!rekey.describe().contains(&hex::encode(keys.key)));
        assert_eq!(DirectControl::from_body("hello there"), None);
        assert_eq!(DirectControl::from_body(r#"{"kind":"rekey"}"#), None);
        assert_eq!(
            TopicControl::from_body(&TopicControl::Member.to_body()),
            Some(TopicControl::Member)
        );
    }

    #[test]
    fn concurrent_rekeys_converge_on_the_smaller_id_whatever_the_order() {
        let (a, b) = (new_epoch("t", 2), new_epoch("t", 2));
        let (small, large) = if a.id < b.id { (&a, &b) } else { (&b, &a) };
        assert!(wins(small, large));
        assert!(!wins(large, small));
        assert!(!wins(small, small));
        let later = new_epoch("t", 3);
        assert!(wins(&later, small) && !wins(small, &later));
        // Fresh epochs never repeat.
        assert_ne!(new_epoch("t", 2), new_epoch("t", 2));
    }
}
