//! SSH prompts brought to the notebook. Every ssh pxkernel starts runs with
//! `SSH_ASKPASS_REQUIRE=force` and `SSH_ASKPASS` set to a small script in
//! pxkernel's 0700 session directory that runs `pxkernel askpass PROMPT`. That
//! client ([`client`]) passes the prompt over a Unix socket (also in the session
//! directory) to the [`Askpass`] server here, with the token of the connection
//! attempt that ssh belongs to. The attempt ([`Asking`]) receives it and asks the
//! frontend; an attempt nobody waits on (a reconnect between cells) is refused at
//! once. Answers are never logged.
//!
//! Also the reading of prompts ([`PromptKind`]): which to hide, and what to tell a
//! user whose frontend takes no input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// The environment variable naming the server's socket.
pub const SOCKET_ENV: &str = "PXKERNEL_ASKPASS_SOCKET";
/// The environment variable carrying the attempt's token.
pub const TOKEN_ENV: &str = "PXKERNEL_ASKPASS_TOKEN";
/// The longest prompt or answer accepted on the socket.
const MAX_LINE: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Question {
    token: String,
    prompt: String,
    /// `SSH_ASKPASS_PROMPT` as ssh set it (`confirm` for yes/no questions).
    hint: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    answer: Option<String>,
}

/// A prompt from an ssh, waiting for its answer (`None` refuses it).
pub struct Prompt {
    /// The text ssh shows.
    pub text: String,
    /// What kind of question it is.
    pub kind: PromptKind,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Option<String>>,
}

type Waiting = Rc<RefCell<HashMap<String, mpsc::UnboundedSender<Prompt>>>>;

/// The server end: one socket for the process.
pub struct Askpass {
    socket: PathBuf,
    script: PathBuf,
    waiting: Waiting,
}

/// One connection attempt's prompts, while it waits for them.
pub struct Asking {
    token: String,
    waiting: Waiting,
    /// The prompts of this attempt's ssh processes.
    pub prompts: mpsc::UnboundedReceiver<Prompt>,
}

impl Drop for Asking {
    fn drop(&mut self) {
        self.waiting.borrow_mut().remove(&self.token);
    }
}

/// Quote a word for POSIX sh (as it is when it needs nothing).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@+".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Askpass {
    /// Listen in `dir` and write the script that runs `program askpass`.
    pub fn start(dir: &Path, program: &Path) -> std::io::Result<Rc<Askpass>> {
        let socket = dir.join("askpass.sock");
        let script = dir.join("askpass");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        let body = format!(
            "#!/bin/sh\nexec {} askpass \"$@\"\n",
            shell_quote(&program.to_string_lossy())
        );
        std::fs::write(&script, body)?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))?;
        let waiting: Waiting = Rc::default();
        let w = waiting.clone();
        tokio::task::spawn_local(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::task::spawn_local(serve(stream, w.clone()));
            }
        });
        Ok(Rc::new(Askpass {
            socket,
            script,
            waiting,
        }))
    }

    /// A new attempt: its token, and where its prompts arrive.
    pub fn asking(&self) -> Asking {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let (tx, prompts) = mpsc::unbounded_channel();
        self.waiting.borrow_mut().insert(token.clone(), tx);
        Asking {
            token,
            waiting: self.waiting.clone(),
            prompts,
        }
    }

    /// The environment an ssh of this attempt runs with.
    pub fn env(&self, asking: &Asking) -> Vec<(&'static str, String)> {
        vec![
            ("SSH_ASKPASS", self.script.to_string_lossy().into_owned()),
            ("SSH_ASKPASS_REQUIRE", "force".to_owned()),
            (SOCKET_ENV, self.socket.to_string_lossy().into_owned()),
            (TOKEN_ENV, asking.token.clone()),
        ]
    }
}

async fn serve(stream: UnixStream, waiting: Waiting) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_LINE as u64);
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let answer = match serde_json::from_str::<Question>(&line) {
        Ok(q) => {
            let sender = waiting.borrow().get(&q.token).cloned();
            match sender {
                Some(sender) => {
                    let (reply, answer) = oneshot::channel();
                    let kind = PromptKind::of(&q.prompt, q.hint.as_deref());
                    let prompt = Prompt {
                        text: q.prompt,
                        kind,
                        reply,
                    };
                    if sender.send(prompt).is_ok() {
                        answer.await.ok().flatten()
                    } else {
                        None
                    }
                }
                None => {
                    tracing::info!("an ssh prompt arrived with nobody to answer it; refused");
                    None
                }
            }
        }
        Err(_) => None,
    };
    let mut out = serde_json::to_string(&Answer { answer }).unwrap_or_default();
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
}

/// `pxkernel askpass PROMPT`, run by ssh: ask pxkernel, print the answer. The exit
/// status is 1 when the prompt is refused, which ssh takes as "no answer".
pub fn client(prompt: &str) -> i32 {
    let (Ok(socket), Ok(token)) = (std::env::var(SOCKET_ENV), std::env::var(TOKEN_ENV)) else {
        eprintln!("pxkernel askpass: run by ssh under pxkernel only");
        return 1;
    };
    let ask = || -> std::io::Result<Option<String>> {
        let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
        let question = Question {
            token,
            prompt: prompt.to_owned(),
            hint: std::env::var("SSH_ASKPASS_PROMPT").ok(),
        };
        let mut line = serde_json::to_string(&question)?;
        line.push('\n');
        stream.write_all(line.as_bytes())?;
        let mut reply = String::new();
        BufReader::new(std::io::Read::take(stream, MAX_LINE as u64)).read_line(&mut reply)?;
        Ok(serde_json::from_str::<Answer>(&reply)?.answer)
    };
    match ask() {
        Ok(Some(answer)) => {
            println!("{answer}");
            0
        }
        _ => 1,
    }
}

/// What ssh is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptKind {
    /// An unknown host key: "Are you sure you want to continue connecting".
    HostKey {
        /// `SHA256:…`, when the prompt shows it.
        fingerprint: Option<String>,
    },
    /// A key's passphrase.
    Passphrase {
        /// The key file.
        key: String,
    },
    /// A password.
    Password,
    /// A one-time code or token.
    Code,
    /// Another yes/no question.
    Confirm,
}

impl PromptKind {
    /// Read a prompt's text (and ssh's `SSH_ASKPASS_PROMPT` hint).
    pub fn of(prompt: &str, hint: Option<&str>) -> PromptKind {
        let lower = prompt.to_lowercase();
        if lower.contains("continue connecting") || lower.contains("authenticity of host") {
            let fingerprint = prompt
                .split_whitespace()
                .find(|w| w.starts_with("SHA256:") || w.starts_with("MD5:"))
                .map(|w| w.trim_end_matches(['.', ',']).to_owned());
            return PromptKind::HostKey { fingerprint };
        }
        if let Some(rest) = lower.find("passphrase for key ").map(|i| &prompt[i + 19..]) {
            let key = rest
                .trim()
                .trim_end_matches(':')
                .trim_matches('\'')
                .to_owned();
            return PromptKind::Passphrase { key };
        }
        if hint == Some("confirm") || lower.contains("(yes/no") {
            return PromptKind::Confirm;
        }
        if [
            "code",
            "token",
            "otp",
            "one-time",
            "one time",
            "verification",
        ]
        .iter()
        .any(|w| lower.contains(w))
        {
            return PromptKind::Code;
        }
        PromptKind::Password
    }

    /// Whether the answer must not be echoed.
    pub fn hidden(&self) -> bool {
        !matches!(self, PromptKind::HostKey { .. } | PromptKind::Confirm)
    }

    /// Why a connection needed input, and how to make it need none: said when
    /// the frontend takes no input (a headless run) or nobody was there to answer.
    /// `keyscan` is the command that records `host`'s key where ssh looks for it.
    pub fn fix(&self, host: &str, keyscan: Option<&str>) -> String {
        match self {
            PromptKind::HostKey { fingerprint } => format!(
                "The host key of {host} is not known{}: check it, then record it with \
                 `{}`, or run the cell in a frontend that takes input to be asked",
                fingerprint
                    .as_ref()
                    .map(|f| format!(" (fingerprint {f})"))
                    .unwrap_or_default(),
                keyscan.map_or_else(
                    || format!("ssh-keyscan {host} >> ~/.ssh/known_hosts"),
                    str::to_owned
                )
            ),
            PromptKind::Passphrase { key } => format!(
                "The key {key} needs its passphrase: load it into an agent (ssh-add {key}), \
                 or run the cell in a frontend that takes input"
            ),
            PromptKind::Password | PromptKind::Code => format!(
                "The host {host} asked for a password or code: use a key with an agent \
                 (ssh-copy-id {host}; ssh-add), or run the cell in a frontend that takes input"
            ),
            PromptKind::Confirm => {
                "ssh asked for a confirmation: run the cell in a frontend that takes input"
                    .to_owned()
            }
        }
    }

    /// `ssh-keyscan` for the host `ssh -G` resolved (alias → HostName, Port,
    /// UserKnownHostsFile), which is what ssh reads next time.
    pub fn keyscan_command(ssh_g: &str) -> Option<String> {
        let value = |key: &str| {
            ssh_g.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.strip_prefix(' '))
                    .map(str::trim)
            })
        };
        let hostname = value("hostname")?;
        let port = value("port").unwrap_or("22");
        let file = value("userknownhostsfile")?.split_whitespace().next()?;
        let port = if port == "22" {
            String::new()
        } else {
            format!("-p {port} ")
        };
        Some(format!("ssh-keyscan {port}{hostname} >> {file}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_read() {
        let host_key = "The authenticity of host 'pxb-unknown (10.231.2.2)' can't be established.\n\
            ED25519 key fingerprint is SHA256:abcDEF123.\n\
            This key is not known by any other names.\n\
            Are you sure you want to continue connecting (yes/no/[fingerprint])? ";
        let cases: &[(&str, &str, Option<&str>, PromptKind)] = &[
            (
                "unknown host key",
                host_key,
                None,
                PromptKind::HostKey {
                    fingerprint: Some("SHA256:abcDEF123".into()),
                },
            ),
            (
                "passphrase",
                "Enter passphrase for key '/home/me/.ssh/id_ed25519': ",
                None,
                PromptKind::Passphrase {
                    key: "/home/me/.ssh/id_ed25519".into(),
                },
            ),
            (
                "password",
                "me@host's password: ",
                None,
                PromptKind::Password,
            ),
            (
                "kbd-interactive password",
                "(me@host) Password: ",
                None,
                PromptKind::Password,
            ),
            ("otp", "Verification code: ", None, PromptKind::Code),
            (
                "duo",
                "Enter a passcode or select one of the following options",
                None,
                PromptKind::Code,
            ),
            (
                "confirm hint",
                "Allow use of key?",
                Some("confirm"),
                PromptKind::Confirm,
            ),
        ];
        for (name, text, hint, want) in cases {
            assert_eq!(&PromptKind::of(text, *hint), want, "{name}");
        }
    }

    #[test]
    fn only_questions_echo() {
        assert!(!PromptKind::HostKey { fingerprint: None }.hidden());
        assert!(!PromptKind::Confirm.hidden());
        assert!(PromptKind::Password.hidden());
        assert!(PromptKind::Code.hidden());
        assert!(PromptKind::Passphrase { key: "k".into() }.hidden());
    }

    #[test]
    fn fixes_name_the_remedy() {
        let hk = PromptKind::HostKey {
            fingerprint: Some("SHA256:x".into()),
        };
        let text = hk.fix("h", None);
        assert!(
            text.contains("known_hosts") && text.contains("SHA256:x"),
            "{text}"
        );
        let text = hk.fix("h", Some("ssh-keyscan -p 2222 10.0.0.1 >> /k"));
        assert!(
            text.contains("`ssh-keyscan -p 2222 10.0.0.1 >> /k`"),
            "{text}"
        );
        let pp = PromptKind::Passphrase { key: "/k".into() }.fix("h", None);
        assert!(pp.contains("ssh-add /k"), "{pp}");
        assert!(PromptKind::Password.fix("h", None).contains("agent"));
    }

    #[test]
    fn keyscan_follows_what_ssh_resolved() {
        let g = "user me\nhostname 10.231.2.2\nport 22\n\
                 userknownhostsfile /tmp/kh /tmp/kh2\nstricthostkeychecking ask\n";
        assert_eq!(
            PromptKind::keyscan_command(g).as_deref(),
            Some("ssh-keyscan 10.231.2.2 >> /tmp/kh")
        );
        let g = "hostname db\nport 2222\nuserknownhostsfile ~/.ssh/known_hosts\n";
        assert_eq!(
            PromptKind::keyscan_command(g).as_deref(),
            Some("ssh-keyscan -p 2222 db >> ~/.ssh/known_hosts")
        );
        assert_eq!(PromptKind::keyscan_command("port 22"), None);
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
