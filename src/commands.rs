//! The stdin command language: one line → one [`Command`]. Pure parsing, no I/O.

use crate::envelope::MAX_MESSAGE_BYTES;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 64;
/// Longest topic secret, in bytes.
pub const MAX_SECRET_LEN: usize = 1024;
/// Longest client id of `/pub --id`, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// How many inbox messages `/inbox` shows when no N is given.
pub const DEFAULT_INBOX_LINES: usize = 20;

/// The command reference printed by `/help`.
pub const HELP: &str = "\
commands:
  /sub TOPIC [SECRET]   subscribe (no secret: an open topic anyone who knows the name can read)
  /unsub TOPIC          leave a topic
  /pub [--id ID] TOPIC MESSAGE
                        publish to a topic (with --id: at most once per ID)
  MESSAGE               (a line without a leading /) publish to the topic last used
                        (before any, to the only subscribed topic)
  /dm PEER MESSAGE      direct message (end-to-end encrypted) to a peer id, or the name
                        of a topic member or a known peer; kept in the outbox and
                        retried until delivered
  /inbox [TOPIC] [N] [--before CURSOR]
                        the last N (default 20) stored messages, oldest first;
                        with --before, the N before that cursor (walk back)
  /members TOPIC        the members of a topic's current epoch
  /rekey TOPIC [--remove PEER]...
                        move a topic to a new epoch, sent end to end to every
                        member but the removed ones (they read nothing after it)
  /invite TOPIC PEER    send a topic's current epoch end to end to a peer, who joins it
  /peers                connected peers and their names
  /topics               subscribed topics (and their epochs)
  /pending              direct messages in the outbox and publishes waiting for a peer
  /whoami               this node's name, peer id and addresses
  /help                 this text
  /quit                 stop the node";

/// A parsed stdin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/sub TOPIC [SECRET]`.
    Sub {
        /// Topic name.
        topic: String,
        /// Shared secret; `None` makes an open topic.
        secret: Option<String>,
    },
    /// `/unsub TOPIC`.
    Unsub {
        /// Topic name.
        topic: String,
    },
    /// `/pub TOPIC MESSAGE`.
    Pub {
        /// Topic name.
        topic: String,
        /// Body.
        msg: String,
        /// `--id CLIENT_ID`: publish at most once per client id.
        client_id: Option<String>,
    },
    /// A line without a leading `/`: publish to the topic last used.
    Say {
        /// Body.
        msg: String,
    },
    /// `/dm PEER MESSAGE`.
    Dm {
        /// Peer id or name.
        to: String,
        /// Body.
        msg: String,
    },
    /// `/inbox [TOPIC] [N] [--before CURSOR]`.
    Inbox {
        /// Only this topic.
        topic: Option<String>,
        /// At most this many (most recent).
        limit: usize,
        /// Only messages before this cursor (80 hex digits, checked here).
        before: Option<String>,
    },
    /// `/members TOPIC`.
    Members {
        /// The topic.
        topic: String,
    },
    /// `/rekey TOPIC [--remove PEER]...`.
    Rekey {
        /// The topic.
        topic: String,
        /// Peers (ids or names) to remove.
        remove: Vec<String>,
    },
    /// `/invite TOPIC PEER`.
    Invite {
        /// The topic.
        topic: String,
        /// The peer (id or name).
        peer: String,
    },
    /// `/peers`.
    Peers,
    /// `/topics`.
    Topics,
    /// `/pending`.
    Pending,
    /// `/whoami`.
    Whoami,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// An empty line: nothing to do.
    Nothing,
}

/// Why a line is not a valid command. The text says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command word is not known.
    #[error("unknown command /{0} (type /help for the list)")]
    Unknown(String),
    /// A required argument is missing.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A topic name is invalid.
    #[error(transparent)]
    Topic(#[from] TopicNameError),
    /// The message is over the size limit.
    #[error("message is {0} bytes; the limit is {MAX_MESSAGE_BYTES}")]
    TooLong(usize),
    /// The secret is over the size limit.
    #[error("secret is longer than {MAX_SECRET_LEN} bytes")]
    SecretTooLong,
    /// `/inbox` got something that is not a count.
    #[error("/inbox takes at most a topic and a count, got {0:?}")]
    InboxArgs(String),
    /// `/inbox --before` got something that is not a cursor.
    #[error("--before takes a cursor (80 hex digits, as printed after a full page), got {0:?}")]
    InboxCursor(String),
}

/// Why a topic name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// Empty name.
    #[error("topic name is empty")]
    Empty,
    /// Longer than [`MAX_TOPIC_LEN`].
    #[error("topic name is longer than {MAX_TOPIC_LEN} bytes")]
    TooLong,
    /// Contains white space or control characters.
    #[error("topic name {0:?} contains white space or control characters")]
    BadChar(String),
}

/// Checks a topic name: 1 to 64 bytes, no white space or control characters.
///
/// # Errors
/// A [`TopicNameError`] saying what is wrong.
pub fn validate_topic(topic: &str) -> Result<(), TopicNameError> {
    if topic.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicNameError::TooLong);
    }
    if topic.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TopicNameError::BadChar(topic.to_owned()));
    }
    Ok(())
}

/// Checks a message body against the size limit.
///
/// # Errors
/// [`CommandError::TooLong`] over [`MAX_MESSAGE_BYTES`].
pub fn validate_message(msg: &str) -> Result<(), CommandError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(CommandError::TooLong(msg.len()));
    }
    Ok(())
}

/// Splits off the first white-space-separated word; returns (word, rest trimmed).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// Parses one stdin line.
///
/// # Errors
/// A [`CommandError`] that says what is wrong with the line.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(Command::Nothing);
    }
    let Some(rest) = line.trim_start().strip_prefix('/') else {
        validate_message(line)?;
        return Ok(Command::Say { msg: line.to_owned() });
    };
    let (word, args) = split_word(rest);
    match word {
        "sub" | "subscribe" => {
            let (topic, secret) = split_word(args);
            if topic.is_empty() {
                return Err(CommandError::Usage("/sub TOPIC [SECRET]"));
            }
            validate_topic(topic)?;
            if secret.len() > MAX_SECRET_LEN {
                return Err(CommandError::SecretTooLong);
            }
            Ok(Command::Sub {
                topic: topic.to_owned(),
                secret: (!secret.is_empty()).then(|| secret.to_owned()),
            })
        }
        "unsub" | "unsubscribe" => {
            let (topic, extra) = split_word(args);
            if topic.is_empty() || !extra.is_empty() {
                return Err(CommandError::Usage("/unsub TOPIC"));
            }
            validate_topic(topic)?;
            Ok(Command::Unsub {
                topic: topic.to_owned(),
            })
        }
        "pub" | "publish" => {
            const USAGE: &str = "/pub [--id CLIENT_ID] TOPIC MESSAGE";
            let (mut first, mut rest) = split_word(args);
            let mut client_id = None;
            if first == "--id" {
                let (id, after) = split_word(rest);
                if id.is_empty() || id.len() > MAX_CLIENT_ID_LEN {
                    return Err(CommandError::Usage(USAGE));
                }
                client_id = Some(id.to_owned());
                (first, rest) = split_word(after);
            }
            let (topic, msg) = (first, rest);
            if topic.is_empty() || msg.is_empty() {
                return Err(CommandError::Usage(USAGE));
            }
            validate_topic(topic)?;
            validate_message(msg)?;
            Ok(Command::Pub {
                topic: topic.to_owned(),
                msg: msg.to_owned(),
                client_id,
            })
        }
        "dm" | "msg" => {
            let (to, msg) = split_word(args);
            if to.is_empty() || msg.is_empty() {
                return Err(CommandError::Usage("/dm PEER MESSAGE"));
            }
            validate_message(msg)?;
            Ok(Command::Dm {
                to: to.to_owned(),
                msg: msg.to_owned(),
            })
        }
        "inbox" => parse_inbox(args),
        "members" => {
            let topic = args.trim();
            if topic.is_empty() || topic.contains(char::is_whitespace) {
                return Err(CommandError::Usage("/members TOPIC"));
            }
            validate_topic(topic)?;
            Ok(Command::Members {
                topic: topic.to_owned(),
            })
        }
        "rekey" => {
            const USAGE: &str = "/rekey TOPIC [--remove PEER]...";
            let mut words = args.split_whitespace();
            let topic = words.next().ok_or(CommandError::Usage(USAGE))?;
            validate_topic(topic)?;
            let mut remove = Vec::new();
            while let Some(word) = words.next() {
                match (word, words.next()) {
                    ("--remove", Some(peer)) => remove.push(peer.to_owned()),
                    _ => return Err(CommandError::Usage(USAGE)),
                }
            }
            Ok(Command::Rekey {
                topic: topic.to_owned(),
                remove,
            })
        }
        "invite" => {
            let words: Vec<&str> = args.split_whitespace().collect();
            let [topic, peer] = words.as_slice() else {
                return Err(CommandError::Usage("/invite TOPIC PEER"));
            };
            validate_topic(topic)?;
            Ok(Command::Invite {
                topic: (*topic).to_owned(),
                peer: (*peer).to_owned(),
            })
        }
        "peers" => no_args(args, Command::Peers, "/peers"),
        "topics" => no_args(args, Command::Topics, "/topics"),
        "pending" | "outbox" => no_args(args, Command::Pending, "/pending"),
        "whoami" => no_args(args, Command::Whoami, "/whoami"),
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" => no_args(args, Command::Quit, "/quit"),
        "" => Err(CommandError::Usage("/COMMAND [ARGS] (type /help for the list)")),
        other => Err(CommandError::Unknown(other.chars().take(32).collect())),
    }
}

fn no_args(args: &str, command: Command, usage: &'static str) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Usage(usage))
    }
}

fn parse_inbox(args: &str) -> Result<Command, CommandError> {
    let mut words: Vec<&str> = args.split_whitespace().collect();
    let mut before = None;
    if let Some(i) = words.iter().position(|w| *w == "--before") {
        let cursor = words.get(i + 1).copied().unwrap_or_default();
        if cursor.len() != 80 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CommandError::InboxCursor(cursor.to_owned()));
        }
        before = Some(cursor.to_ascii_lowercase());
        words.drain(i..i + 2);
    }
    let count = |s: &str| s.parse::<usize>().ok().filter(|n| *n > 0);
    let (topic, limit) = match words.as_slice() {
        [] => (None, DEFAULT_INBOX_LINES),
        [one] => match count(one) {
            Some(n) => (None, n),
            None => (Some(*one), DEFAULT_INBOX_LINES),
        },
        [topic, n] => (
            Some(*topic),
            count(n).ok_or_else(|| CommandError::InboxArgs(n.to_string()))?,
        ),
        _ => return Err(CommandError::InboxArgs(args.to_owned())),
    };
    if let Some(t) = topic {
        validate_topic(t)?;
    }
    Ok(Command::Inbox {
        topic: topic.map(str::to_owned),
        limit,
        before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(
            parse("/sub news s3cret").unwrap(),
            Command::Sub {
                topic: "news".into(),
                secret: Some("s3cret".into())
            }
        );
        assert_eq!(
            parse("/sub news").unwrap(),
            Command::Sub {
                topic: "news".into(),
                secret: None
            }
        );
        assert_eq!(
            parse("/pub news hello  world ").unwrap(),
            Command::Pub {
                topic: "news".into(),
                msg: "hello  world".into(),
                client_id: None
            }
        );
        assert_eq!(parse("hi there").unwrap(), Command::Say { msg: "hi there".into() });
        assert_eq!(
            parse("/dm bob hi").unwrap(),
            Command::Dm {
                to: "bob".into(),
                msg: "hi".into()
            }
        );
        assert_eq!(
            parse("/inbox").unwrap(),
            Command::Inbox {
                topic: None,
                limit: DEFAULT_INBOX_LINES,
                before: None,
            }
        );
        assert_eq!(
            parse("/inbox 5").unwrap(),
            Command::Inbox {
                topic: None,
                limit: 5,
                before: None
            }
        );
        assert_eq!(
            parse("/inbox news 3").unwrap(),
            Command::Inbox {
                topic: Some("news".into()),
                limit: 3,
                before: None,
            }
        );
        let cursor = format!("{:016x}{}", 5u64, "ab".repeat(32));
        assert_eq!(
            parse(&format!("/inbox news 3 --before {cursor}")).unwrap(),
            Command::Inbox {
                topic: Some("news".into()),
                limit: 3,
                before: Some(cursor),
            }
        );
        assert!(parse("/inbox news --before nope")
            .unwrap_err()
            .to_string()
            .contains("cursor"));
        assert!(parse("/inbox --before").is_err());
        assert_eq!(parse("/peers").unwrap(), Command::Peers);
        assert_eq!(parse("/topics").unwrap(), Command::Topics);
        assert_eq!(parse("/whoami").unwrap(), Command::Whoami);
        assert_eq!(parse("/help").unwrap(), Command::Help);
        assert_eq!(parse("/quit\r\n").unwrap(), Command::Quit);
        assert_eq!(parse("   ").unwrap(), Command::Nothing);
        assert_eq!(parse("/unsub news").unwrap(), Command::Unsub { topic: "news".into() });
    }

    #[test]
    fn explains_bad_commands() {
        assert_eq!(
            parse("/frobnicate x").unwrap_err().to_string(),
            "unknown command /frobnicate (type /help for the list)"
        );
        assert_eq!(
            parse("/pub news").unwrap_err().to_string(),
            "usage: /pub [--id CLIENT_ID] TOPIC MESSAGE"
        );
        assert_eq!(
            parse("/pub --id req-1 news hi there").unwrap(),
            Command::Pub {
                topic: "news".into(),
                msg: "hi there".into(),
                client_id: Some("req-1".into())
            }
        );
        assert!(parse("/pub --id").is_err());
        assert!(parse("/pub --id x news").is_err());
        assert_eq!(parse("/sub").unwrap_err().to_string(), "usage: /sub TOPIC [SECRET]");
        assert_eq!(parse("/dm bob").unwrap_err().to_string(), "usage: /dm PEER MESSAGE");
        assert!(parse("/inbox news x").unwrap_err().to_string().contains("\"x\""));
        assert_eq!(
            parse("/members news").unwrap(),
            Command::Members { topic: "news".into() }
        );
        assert!(parse("/members").is_err());
        assert_eq!(
            parse("/rekey news --remove dave --remove 12D3KooWX").unwrap(),
            Command::Rekey {
                topic: "news".into(),
                remove: vec!["dave".into(), "12D3KooWX".into()],
            }
        );
        assert_eq!(
            parse("/rekey news").unwrap(),
            Command::Rekey {
                topic: "news".into(),
                remove: vec![],
            }
        );
        assert!(parse("/rekey news dave").is_err());
        assert!(parse("/rekey news --remove").is_err());
        assert_eq!(
            parse("/invite news erin").unwrap(),
            Command::Invite {
                topic: "news".into(),
                peer: "erin".into(),
            }
        );
        assert!(parse("/invite news").is_err());
        assert!(parse("/inbox a b c").is_err());
        assert!(parse("/peers now").is_err());
        assert!(matches!(
            parse(&format!("/sub {}", "t".repeat(65))),
            Err(CommandError::Topic(TopicNameError::TooLong))
        ));
        let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(
            parse(&format!("/pub news {big}")),
            Err(CommandError::TooLong(MAX_MESSAGE_BYTES + 1))
        );
        assert_eq!(parse(&big), Err(CommandError::TooLong(MAX_MESSAGE_BYTES + 1)));
        assert!(parse("/").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn never_panics(line in ".{0,200}") {
            let _ = parse(&line);
        }

        #[test]
        fn never_panics_on_commands(word in "(sub|unsub|pub|dm|inbox|peers|x)", args in "[ a-z0-9\\t\u{e9}\u{3000}]{0,40}") {
            let _ = parse(&format!("/{word} {args}"));
        }

        #[test]
        fn published_text_is_kept(topic in "[a-z]{1,10}", msg in "[^\\s/][^\\r\\n]{0,50}") {
            let line = format!("/pub {topic} {msg}");
            let parsed = parse(&line);
            prop_assert_eq!(parsed, Ok(Command::Pub { topic, msg: msg.trim().to_owned(), client_id: None }));
        }
    }
}
