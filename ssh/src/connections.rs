//! [`Ssh`]: every OpenSSH connection of one pxkernel, shared by the families
//! through the contract's `Shared` (`%ssh_tunnel`, `%sql --ssh`, engines on ssh
//! hosts): one [`Master`] per endpoint, the named tunnels on them, the askpass
//! server, the notices for the next cell. A master lives while something holds a
//! forward on it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::SystemTime;

use pxkernel_contract::Shared;
use pxkernel_kernel::kernelspec::launch::session_dir;
use pxkernel_kernel::server::Request;
use tokio::sync::watch;

use crate::args::{Endpoint, OpenTunnel};
use crate::askpass::Askpass;
use crate::error::SshError;
use crate::forward::{Forward, Target};
use crate::master::{Master, Settings, State, Status};
use crate::notices::Notices;

/// A named set of forwards on one master.
#[derive(Clone)]
pub struct Tunnel {
    /// Its name.
    pub name: String,
    /// The connection it uses.
    pub master: Rc<Master>,
    /// Its forwards as made (port 0 replaced by the port picked).
    pub forwards: Vec<Forward>,
    /// The forwards as written, to tell a re-run of the same line.
    specs: Vec<String>,
    owner: u64,
}

impl Tunnel {
    /// Its connection's state.
    pub fn status(&self) -> Status {
        self.master.status()
    }
}

/// What opening a tunnel did.
pub enum Opened {
    /// A new tunnel.
    New(Tunnel),
    /// The same line ran again: the tunnel that was open already.
    Already(Tunnel),
    /// A tunnel of that name was replaced.
    Replaced(Tunnel),
}

/// Every ssh connection of this pxkernel.
pub struct Ssh {
    settings: Settings,
    program: PathBuf,
    askpass: RefCell<Option<Rc<Askpass>>>,
    masters: RefCell<HashMap<String, Rc<Master>>>,
    opening: RefCell<HashMap<String, Rc<tokio::sync::Mutex<()>>>>,
    tunnels: RefCell<Vec<Tunnel>>,
    next_id: Cell<u64>,
    connecting: Cell<usize>,
    notices: Notices,
    interrupt: watch::Sender<u64>,
}

impl Ssh {
    /// The connections of this kernel, made by the first family that asks.
    pub fn shared(shared: &Shared) -> Rc<Ssh> {
        shared.get_or_init(|| {
            let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pxkernel"));
            Ssh::new(Settings::default(), program)
        })
    }

    /// Connections made with `settings`; `program askpass` answers prompts.
    pub fn new(settings: Settings, program: PathBuf) -> Ssh {
        Ssh {
            settings,
            program,
            askpass: RefCell::new(None),
            masters: RefCell::new(HashMap::new()),
            opening: RefCell::new(HashMap::new()),
            tunnels: RefCell::new(Vec::new()),
            next_id: Cell::new(1),
            connecting: Cell::new(0),
            notices: Notices::default(),
            interrupt: watch::Sender::new(0),
        }
    }

    fn askpass(&self) -> Result<Rc<Askpass>, SshError> {
        if let Some(a) = self.askpass.borrow().as_ref() {
            return Ok(a.clone());
        }
        let dir = session_dir().map_err(|e| {
            SshError::Session(format!("pxkernel's runtime directory is unusable: {e}"))
        })?;
        let a = Askpass::start(dir, &self.program).map_err(|e| {
            SshError::Session(format!(
                "could not set up ssh prompts in {}: {e}",
                dir.display()
            ))
        })?;
        *self.askpass.borrow_mut() = Some(a.clone());
        Ok(a)
    }

    /// A new id for whoever holds forwards (a tunnel, an engine).
    pub fn new_owner(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// The master for `endpoint`, connecting (and asking `req`'s frontend for any
    /// prompt) when there is none. A master that is down is replaced.
    pub async fn master(
        &self,
        req: Option<&Request>,
        endpoint: &Endpoint,
    ) -> Result<Rc<Master>, SshError> {
        let key = endpoint.key();
        let lock = self
            .opening
            .borrow_mut()
            .entry(key.clone())
            .or_default()
            .clone();
        let _held = lock.lock().await;
        let existing = self.masters.borrow().get(&key).cloned();
        if let Some(m) = existing {
            let status = m.status();
            match status.state {
                State::Up => return Ok(m),
                State::Reconnecting => {
                    return Err(SshError::NotUp {
                        destination: endpoint.destination.clone(),
                        reason: status.last_error.unwrap_or_default(),
                    });
                }
                State::Down | State::Closed => {
                    m.close().await;
                    self.masters.borrow_mut().remove(&key);
                }
            }
        }
        let askpass = self.askpass()?;
        let dir = session_dir().map_err(|e| SshError::Session(e.to_string()))?;
        let socket = dir.join(format!("ssh-{}", self.new_owner()));
        self.connecting.set(self.connecting.get() + 1);
        let interrupted = self.interrupt.subscribe();
        let opened = Master::open(
            endpoint.clone(),
            socket,
            askpass,
            self.settings.clone(),
            self.notices.clone(),
            req,
            &interrupted,
        )
        .await;
        self.connecting.set(self.connecting.get() - 1);
        let master = opened?;
        self.masters.borrow_mut().insert(key, master.clone());
        Ok(master)
    }

    /// Close `master` when nothing holds a forward on it any more.
    pub async fn release(&self, master: &Rc<Master>) {
        if master.holds_forwards() {
            return;
        }
        let key = master.endpoint().key();
        let same = self
            .masters
            .borrow()
            .get(&key)
            .is_some_and(|m| Rc::ptr_eq(m, master));
        if same {
            self.masters.borrow_mut().remove(&key);
        }
        master.close().await;
    }

    fn default_name(&self, endpoint: &Endpoint) -> String {
        let host: String = endpoint
            .host()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let taken = |n: &str| self.tunnels.borrow().iter().any(|t| t.name == n);
        if !taken(&host) {
            return host;
        }
        (2..)
            .map(|i| format!("{host}-{i}"))
            .find(|n| !taken(n))
            .unwrap_or(host)
    }

    /// Open the tunnel a `%ssh_tunnel` line asks for.
    pub async fn open_tunnel(&self, req: &Request, open: &OpenTunnel) -> Result<Opened, SshError> {
        let specs: Vec<String> = open.forwards.iter().map(|(s, _)| s.clone()).collect();
        let same = |t: &Tunnel| t.master.endpoint() == &open.endpoint && t.specs == specs;
        let existing = self
            .tunnels
            .borrow()
            .iter()
            .find(|t| match &open.name {
                Some(n) => t.name == *n,
                None => same(t),
            })
            .cloned();
        let mut replaced = false;
        if let Some(t) = existing {
            // Up, or coming back by itself: the same line keeps it.
            if same(&t) && matches!(t.status().state, State::Up | State::Reconnecting) {
                return Ok(Opened::Already(t));
            }
            // Down, or a new line under the same name: open it afresh.
            self.close_tunnel(&t.name).await?;
            replaced = open.name.is_some() && !same(&t);
        }
        let name = open
            .name
            .clone()
            .unwrap_or_else(|| self.default_name(&open.endpoint));
        let master = self.master(Some(req), &open.endpoint).await?;
        let owner = self.new_owner();
        let mut made = Vec::new();
        for (_, f) in &open.forwards {
            match master.add_forward(owner, f).await {
                Ok(m) => made.push(m),
                Err(e) => {
                    master.remove_forwards(owner).await;
                    self.release(&master).await;
                    return Err(e);
                }
            }
        }
        let tunnel = Tunnel {
            name,
            master,
            forwards: made,
            specs,
            owner,
        };
        self.tunnels.borrow_mut().push(tunnel.clone());
        Ok(if replaced {
            Opened::Replaced(tunnel)
        } else {
            Opened::New(tunnel)
        })
    }

    /// Close one tunnel.
    pub async fn close_tunnel(&self, name: &str) -> Result<(), SshError> {
        let tunnel = {
            let mut all = self.tunnels.borrow_mut();
            let i = all
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| SshError::NoTunnel(name.to_owned()))?;
            all.remove(i)
        };
        tunnel.master.remove_forwards(tunnel.owner).await;
        self.release(&tunnel.master).await;
        Ok(())
    }

    /// Close every tunnel; their names.
    pub async fn close_all_tunnels(&self) -> Vec<String> {
        let names: Vec<String> = self
            .tunnels
            .borrow()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        for n in &names {
            let _ = self.close_tunnel(n).await;
        }
        names
    }

    /// The open tunnels, oldest first.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.borrow().clone()
    }

    /// A local TCP port that reaches `host:port` as seen from `endpoint`: the
    /// forward of an open tunnel, else a new tunnel with a free local port.
    pub async fn local_port_for(
        &self,
        req: &Request,
        endpoint: &Endpoint,
        host: &str,
        port: u16,
    ) -> Result<(u16, String), SshError> {
        for t in self.tunnels.borrow().iter() {
            if t.master.endpoint() != endpoint || t.status().state != State::Up {
                continue;
            }
            for f in &t.forwards {
                if let (Target::Tcp { host: h, port: p }, Some(local)) = (&f.target, f.local_port())
                    && h == host
                    && *p == port
                {
                    return Ok((local, t.name.clone()));
                }
            }
        }
        let spec = format!("127.0.0.1:0:{}:{port}", bracket(host));
        let forward = Forward::parse_local(&spec).map_err(|e| SshError::Forward {
            forward: spec.clone(),
            destination: endpoint.destination.clone(),
            message: e.to_string(),
        })?;
        let open = OpenTunnel {
            name: None,
            endpoint: endpoint.clone(),
            forwards: vec![(spec, forward)],
        };
        match self.open_tunnel(req, &open).await? {
            Opened::New(t) | Opened::Already(t) | Opened::Replaced(t) => {
                let local = t.forwards[0].local_port().unwrap_or(0);
                Ok((local, t.name))
            }
        }
    }

    /// Stop the connections being made for the current cell.
    pub fn interrupt(&self) -> bool {
        self.interrupt.send_modify(|n| *n += 1);
        self.connecting.get() > 0
    }

    /// What to tell the user before the next cell.
    pub fn take_notices(&self) -> Vec<String> {
        self.notices.take()
    }

    /// Close every connection.
    pub async fn shutdown(&self) {
        self.tunnels.borrow_mut().clear();
        let masters: Vec<Rc<Master>> = self.masters.borrow_mut().drain().map(|(_, m)| m).collect();
        for m in masters {
            m.close().await;
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// When, as the `--list` view says it: `12 s ago`.
pub fn ago(t: SystemTime) -> String {
    let d = t.elapsed().unwrap_or_default();
    format!("{} ago", pxkernel_contract::display::human_duration(d))
}
