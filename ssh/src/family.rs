//! The ssh family as the router sees it: `%ssh_tunnel` (open, `--list`,
//! `--close`), the notices of dropped and restored connections, interrupting a
//! connection being made, and closing every connection at shutdown. It must come
//! last in the family list, so that engines on ssh hosts stop before their
//! connections close.

use std::rc::Rc;

use pxkernel_contract::display::{Align, Cell, Table};
use pxkernel_contract::{
    Call, Family, Home, Interrupted, LocalFuture, MagicError, MagicSpec, Shared,
};
use pxkernel_kernel::server::{ExecuteOutcome, Request};
use serde_json::json;

use crate::args::{self, Close, TunnelCommand};
use crate::connections::{Opened, Ssh, Tunnel, ago};
use crate::error::SshError;
use crate::magics::MAGICS;
use crate::master::State;

/// The ssh family.
pub struct SshFamily {
    ssh: Rc<Ssh>,
}

impl SshFamily {
    /// The family as the router takes it.
    pub fn boxed(_home: &Rc<Home>, shared: &Shared) -> Box<dyn Family> {
        Box::new(SshFamily {
            ssh: Ssh::shared(shared),
        })
    }

    async fn ssh_tunnel(&self, req: &Request, line: &str) -> Result<ExecuteOutcome, MagicError> {
        match args::parse(line)? {
            TunnelCommand::List => {
                show_list(req, &self.ssh.tunnels());
            }
            TunnelCommand::Close(Close::Named(name)) => {
                self.ssh.close_tunnel(&name).await.map_err(failed)?;
                req.stream("stdout", &format!("tunnel {name} closed\n"));
            }
            TunnelCommand::Close(Close::All) => {
                let names = self.ssh.close_all_tunnels().await;
                let said = if names.is_empty() {
                    "no tunnel was open\n".to_owned()
                } else {
                    format!("closed {}\n", names.join(", "))
                };
                req.stream("stdout", &said);
            }
            TunnelCommand::Open(open) => {
                let (tunnel, how) = match self.ssh.open_tunnel(req, &open).await.map_err(failed)? {
                    Opened::New(t) => (t, "open"),
                    Opened::Already(t) if t.status().state == State::Reconnecting => {
                        (t, "already open (reconnecting)")
                    }
                    Opened::Already(t) => (t, "already open"),
                    Opened::Replaced(t) => (t, "replaced and open"),
                };
                let mut said = format!(
                    "tunnel {} to {} {how}:\n",
                    tunnel.name,
                    tunnel.master.endpoint().destination
                );
                for f in &tunnel.forwards {
                    said.push_str(&format!("  {f}\n"));
                }
                req.stream("stdout", &said);
            }
        }
        Ok(ExecuteOutcome::ok())
    }
}

/// An ssh failure as the notebook shows it.
pub fn failed(e: SshError) -> MagicError {
    match e {
        SshError::Interrupted => MagicError::failed("KeyboardInterrupt", e.to_string()),
        SshError::NoTunnel(_) => MagicError::usage("ssh_tunnel", e.to_string()),
        _ => MagicError::failed("SSHError", e.to_string()),
    }
}

fn show_list(req: &Request, tunnels: &[Tunnel]) {
    if tunnels.is_empty() {
        req.stream(
            "stdout",
            "no tunnels: open one with %ssh_tunnel -L PORT:HOST:PORT [user@]host\n",
        );
        return;
    }
    let mut t = Table::new(&[
        ("name", Align::Left),
        ("destination", Align::Left),
        ("forwards", Align::Left),
        ("state", Align::Left),
        ("since", Align::Left),
        ("last error", Align::Left),
    ]);
    t.missing_text = "-";
    for tunnel in tunnels {
        let status = tunnel.status();
        let forwards: Vec<String> = tunnel.forwards.iter().map(|f| f.to_string()).collect();
        t.rows.push(vec![
            Cell::from(tunnel.name.as_str()),
            Cell::from(tunnel.master.endpoint().destination.as_str()),
            Cell::from(forwards.join(", ")),
            Cell::from(status.state.as_str()),
            Cell::from(ago(status.since)),
            status.last_error.map_or(Cell::Missing, Cell::from),
        ]);
    }
    req.publish("display_data", &json!({"data": t.bundle(), "metadata": {}}));
}

impl Family for SshFamily {
    fn magics(&self) -> &'static [MagicSpec] {
        MAGICS
    }

    fn run<'a>(&'a self, call: Call<'a>) -> LocalFuture<'a, Result<ExecuteOutcome, MagicError>> {
        Box::pin(async move {
            if call.body.is_some() {
                return Err(MagicError::usage(
                    call.name,
                    "there is no cell form: write %ssh_tunnel, not %%ssh_tunnel",
                ));
            }
            self.ssh_tunnel(call.req, call.args).await
        })
    }

    fn notices(&self) -> Vec<String> {
        self.ssh.take_notices()
    }

    fn interrupt(&self) -> Interrupted {
        if self.ssh.interrupt() {
            Interrupted::Stopped
        } else {
            Interrupted::Nothing
        }
    }

    fn shutdown(&self) -> LocalFuture<'_, ()> {
        Box::pin(self.ssh.shutdown())
    }
}
