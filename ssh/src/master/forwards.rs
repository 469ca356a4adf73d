//! The forwards held on a master: added (one `ssh -O forward` for many, a free
//! port picked for port 0), removed (`-O cancel`), restored after a reconnect.

use std::process::Stdio;
use std::time::Duration;

use super::{Master, State};
use crate::error::SshError;
use crate::forward::{Forward, Listen};

impl Master {
    pub(super) async fn restore_forwards(&self) -> Result<(), SshError> {
        let held: Vec<Forward> = self
            .forwards
            .borrow()
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        // All at once (one ssh -O per forward would be slow with many engines);
        // one by one only to find which failed.
        if held.is_empty() || self.control_all("forward", &held).await.is_ok() {
            return Ok(());
        }
        for f in held {
            self.control("forward", &f).await?;
        }
        Ok(())
    }

    /// Add forwards for `owner`, all in one request. Local ports must be fixed
    /// (not 0).
    pub async fn add_forwards(&self, owner: u64, forwards: &[Forward]) -> Result<(), SshError> {
        self.control_all("forward", forwards).await?;
        self.forwards
            .borrow_mut()
            .extend(forwards.iter().map(|f| (owner, f.clone())));
        Ok(())
    }

    /// Run `ssh -S SOCKET -O OP FLAG ARG DEST` for one forward.
    async fn control(&self, op: &str, forward: &Forward) -> Result<(), SshError> {
        self.control_all(op, std::slice::from_ref(forward)).await
    }

    /// Run `ssh -S SOCKET -O OP` with every forward's flag.
    async fn control_all(&self, op: &str, forwards: &[Forward]) -> Result<(), SshError> {
        let Some(forward) = forwards.first() else {
            return Ok(());
        };
        let mut cmd = tokio::process::Command::new(&self.settings.program);
        cmd.arg("-S").arg(&self.socket).args(["-O", op]);
        for f in forwards {
            cmd.args([f.flag(), &f.ssh_arg()]);
        }
        let run = cmd
            .arg("--")
            .arg(&self.endpoint.destination)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .map_err(|_| SshError::Forward {
                forward: describe(forwards),
                destination: self.endpoint.destination.clone(),
                message: "the master did not answer within 10 s".to_owned(),
            })?
            .map_err(|e| SshError::Spawn {
                program: self.settings.program.display().to_string(),
                reason: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        if op == "forward"
            && forwards.len() == 1
            && said.contains("forward")
            && said.contains("failed")
            && let Listen::Tcp { .. } = forward.listen
        {
            return Err(SshError::Forward {
                forward: forward.to_string(),
                destination: self.endpoint.destination.clone(),
                message: format!(
                    "could not listen on {} (is the port in use?)",
                    forward.listen
                ),
            });
        }
        let message = said
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.rsplit_once("failed: ").map_or(l, |(_, m)| m))
            .collect::<Vec<_>>()
            .join("; ");
        Err(SshError::Forward {
            forward: describe(forwards),
            destination: self.endpoint.destination.clone(),
            message: if message.is_empty() {
                out.status.to_string()
            } else {
                message
            },
        })
    }

    /// Add a forward for `owner`. A local port 0 becomes a free port; the forward
    /// as it was made is returned.
    pub async fn add_forward(&self, owner: u64, forward: &Forward) -> Result<Forward, SshError> {
        let pick = forward.local_port() == Some(0);
        let mut last = None;
        for _ in 0..if pick { 3 } else { 1 } {
            let made = if pick {
                let port = free_port(&forward.bind_for_probe()).map_err(|e| SshError::Forward {
                    forward: forward.to_string(),
                    destination: self.endpoint.destination.clone(),
                    message: format!("no free local port: {e}"),
                })?;
                forward.with_port(port)
            } else {
                forward.clone()
            };
            match self.control("forward", &made).await {
                Ok(()) => {
                    self.forwards.borrow_mut().push((owner, made.clone()));
                    return Ok(made);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(SshError::Interrupted))
    }

    /// Remove every forward `owner` holds.
    pub async fn remove_forwards(&self, owner: u64) {
        let mine: Vec<Forward> = {
            let mut all = self.forwards.borrow_mut();
            let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(o, _)| *o == owner);
            *all = rest;
            mine.into_iter().map(|(_, f)| f).collect()
        };
        if self.status().state == State::Up
            && let Err(e) = self.control_all("cancel", &mine).await
        {
            // A master closed meanwhile (its last holder let it go) took them along.
            if self.closing.get() {
                tracing::debug!("{e}");
            } else {
                tracing::warn!("{e}");
            }
        }
        for f in mine {
            if let Listen::Unix(path) = &f.listen {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Whether anyone still holds a forward on it.
    pub fn holds_forwards(&self) -> bool {
        !self.forwards.borrow().is_empty()
    }
}

/// Forwards as an error names them.
fn describe(forwards: &[Forward]) -> String {
    match forwards {
        [one] => one.to_string(),
        many => format!("{} (and {} more)", many[0], many.len() - 1),
    }
}

/// A TCP port free on `bind` now.
fn free_port(bind: &str) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((bind, 0))?;
    Ok(l.local_addr()?.port())
}
