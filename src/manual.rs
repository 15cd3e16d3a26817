//! `murmur man` and `murmur completions`: both generated from the clap
//! definition, the man page with sections on the stdin commands, the HTTP
//! API (from docs/openapi.yaml) and the data dir's files; the completions
//! without the hidden options.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::cli::Cli;

/// Writes the man page (roff) to `out`.
///
/// # Errors
/// When writing fails.
pub fn man_page(out: &mut impl Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)?;
    out.write_all(extra_sections().as_bytes())
}

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> io::Result<()> {
    let mut command = Cli::command();
    let hidden = hidden_longs(&command);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "murmur", &mut script);
    let script = String::from_utf8_lossy(&script);
    out.write_all(without_options(&script, &hidden).as_bytes())
}

/// The long names of the hidden options of `command` and its subcommands.
fn hidden_longs(command: &clap::Command) -> Vec<String> {
    let mut longs: Vec<String> = command
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    for sub in command.get_subcommands() {
        longs.extend(hidden_longs(sub));
    }
    longs
}

/// `script` less every mention of the options `longs`. clap_complete puts
/// hidden options in its scripts; each shell's script names an option in
/// one of a few line shapes, handled here (tests/node.rs checks the result):
/// a line of its own (zsh, fish), a word in a list (bash `opts=`, fish
/// `string join`), or a bash `case` arm up to its `;;`.
fn without_options(script: &str, longs: &[String]) -> String {
    // A word naming one of `longs`: `--long`, or `long` / `long=` (fish).
    let names = |word: &str| {
        let word = word.trim_matches(|c| c == '"' || c == '\'');
        let bare = match word.strip_prefix("--") {
            Some(long) => long,
            None if word.starts_with('-') => return false,
            None => word,
        };
        let bare = bare.trim_end_matches('=');
        longs.iter().any(|l| l == bare)
    };
    let mut out = String::with_capacity(script.len());
    let mut in_arm = false;
    for line in script.lines() {
        let trimmed = line.trim();
        if in_arm {
            in_arm = trimmed != ";;";
            continue;
        }
        if let Some(arm) = trimmed.strip_suffix(')') {
            if arm.starts_with("--") && arm.split('|').any(names) {
                in_arm = true;
                continue;
            }
        }
        let mentions = longs.iter().any(|l| {
            line.contains(&format!("--{l}=")) || line.contains(&format!("--{l}[")) || line.contains(&format!("-l {l} "))
        });
        if mentions && !line.contains("opts=") {
            continue;
        }
        if line.contains("opts=") || trimmed.starts_with("string join") {
            let indent = &line[..line.len() - line.trim_start().len()];
            let kept: Vec<&str> = trimmed.split(' ').filter(|w| !names(w)).collect();
            out.push_str(indent);
            out.push_str(&kept.join(" "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The man page's sections beyond the options: the stdin commands, the HTTP
/// API, the files of a data dir, the environment.
fn extra_sections() -> String {
    let mut roff = String::new();
    roff.push_str(
        ".SH \"STDIN COMMANDS\"\nA running node reads one command per line on its standard input.\n.PP\n.nf\n",
    );
    for line in crate::commands::HELP.lines().skip(1) {
        roff.push_str(&escape(line));
        roff.push('\n');
    }
    roff.push_str(".fi\n");
    roff.push_str(
        ".SH \"HTTP API\"\nWith \\fB\\-\\-api\\fR ADDR the node serves a JSON API for one user, \
         its \\fB\\-\\-name\\fR; errors are 4xx with {\"error\": \"...\"}. \
         The OpenAPI document is at \\fBGET /openapi.json\\fR.\n",
    );
    for (method, path, summary) in api_routes() {
        roff.push_str(&format!(
            ".TP\n\\fB{} {}\\fR\n{}\n",
            method.to_uppercase(),
            escape(&path),
            escape(&summary)
        ));
    }
    roff.push_str(".SH FILES\nIn the data dir (\\fB\\-\\-data\\-dir\\fR), each file mode 0600:\n");
    for (file, what) in [
        (
            crate::keyring::IDENTITY_FILE,
            "the node's ed25519 key, its peer id (sealed with a passphrase)",
        ),
        (
            crate::keyring::KEYRING_FILE,
            "topic names and the keys derived from their secrets, never the secrets (sealed with a passphrase)",
        ),
        (
            crate::store::INBOX_FILE,
            "the inbox, every message sealed (with its \\-wal and \\-shm files)",
        ),
        (
            crate::store::INTAKE_FILE,
            "topic messages not yet moved into the inbox (sealed), replayed into it at the next start",
        ),
        (
            crate::network::dht::ROUTING_TABLE_FILE,
            "the DHT's peers, kept across restarts",
        ),
        (crate::node::LOCK_FILE, "held by the running node, with its pid"),
    ] {
        roff.push_str(&format!(".TP\n\\fB{}\\fR\n{what}\n", escape(file)));
    }
    roff.push_str(&format!(
        ".SH ENVIRONMENT\n.TP\n\\fB{}\\fR\nthe passphrase that seals the data dir (as \\fB\\-\\-passphrase\\-file\\fR)\n\
         .TP\n\\fBMURMUR_API_TOKEN\\fR\nas \\fB\\-\\-api\\-token\\fR\n\
         .TP\n\\fBRUST_LOG\\fR\nlog filter for stderr (default warn,murmur=info)\n",
        crate::cli::PASSPHRASE_ENV
    ));
    roff.push_str(".SH \"SEE ALSO\"\nREADME.md and docs/ in the source tree: api.md, security.md, lan.md, wan.md.\n");
    roff
}

/// (method, path, summary) of every operation in docs/openapi.yaml, in order.
fn api_routes() -> Vec<(String, String, String)> {
    let doc: serde_norway::Value =
        serde_norway::from_str(crate::api::OPENAPI_YAML).expect("docs/openapi.yaml is valid YAML");
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_mapping().into_iter().flatten() {
        for (method, op) in ops.as_mapping().into_iter().flatten() {
            if let (Some(path), Some(method), Some(summary)) = (path.as_str(), method.as_str(), op["summary"].as_str())
            {
                let summary = summary.replace("This document", "The OpenAPI document");
                routes.push((method.to_owned(), path.to_owned(), summary));
            }
        }
    }
    routes
}

/// Text as roff: backslashes and hyphens escaped, no line read as a request.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\\\").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_options_are_found_and_left_out_of_every_shell() {
        let hidden = hidden_longs(&Cli::command());
        for long in ["rekey-grace", "bench-plain", "murmur-bin"] {
            assert!(hidden.iter().any(|h| h == long), "{hidden:?}");
        }
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completions(shell, &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            for long in &hidden {
                assert!(!script.contains(long.as_str()), "{shell}: {long} is in\n{script}");
            }
            for long in ["sync-writes", "passphrase-file", "relay-server", "catchup"] {
                assert!(script.contains(long), "{shell}: {long} is missing");
            }
        }
    }

    #[test]
    fn the_man_page_has_the_commands_the_api_and_the_files() {
        let mut out = Vec::new();
        man_page(&mut out).unwrap();
        let man = String::from_utf8(out).unwrap();
        for part in [
            ".SH \"STDIN COMMANDS\"",
            "/sub TOPIC",
            ".SH \"HTTP API\"",
            "POST /publish",
            "inbox.sqlite3",
            "inbox.intake",
        ] {
            assert!(man.contains(part), "{part}");
        }
        assert!(api_routes().len() >= 14);
    }
}
