//! `%engines start --profile NAME` and `%engines profiles`: the tunnels a cluster
//! profile names are opened first, then every host's master (prompts come to
//! this cell), then all hosts are probed and their engines started in parallel.

use std::rc::Rc;
use std::time::{Duration, Instant};

use pxkernel_contract::MagicError;
use pxkernel_contract::display::{Align, Cell as TableCell, Table, human_duration};
use pxkernel_kernel::server::{ExecuteOutcome, Request};
use pxkernel_ssh::args::TunnelCommand;
use serde_json::json;

use super::{Px, failed, usage};
use crate::engines::id_ranges;
use crate::profiles;
use crate::ssh::{HostsLauncher, SshHost};

impl Px {
    /// Start what the profile `name` names.
    pub(super) async fn start_profile(
        &self,
        req: &Request,
        name: &str,
        timeout: Duration,
    ) -> Result<ExecuteOutcome, MagicError> {
        let began = Instant::now();
        let profile = profiles::load(&profiles::dir(), name)
            .map_err(|e| usage("engines start", e.to_string()))?;
        let failed_with = |e: String| failed("EngineError", e.clone(), vec![e]);
        for t in &profile.tunnels {
            let mut open = match pxkernel_ssh::args::parse(&t.args) {
                Ok(TunnelCommand::Open(open)) => open,
                _ => {
                    return Err(usage(
                        "engines start",
                        format!("profile {name}: bad tunnel {:?}", t.args),
                    ));
                }
            };
            if t.name.is_some() {
                open.name = t.name.clone();
            }
            let tunnel = match self.ssh.open_tunnel(req, &open).await {
                Ok(
                    pxkernel_ssh::connections::Opened::New(t)
                    | pxkernel_ssh::connections::Opened::Already(t)
                    | pxkernel_ssh::connections::Opened::Replaced(t),
                ) => t,
                Err(e) => return Err(failed_with(e.to_string())),
            };
            let forwards: Vec<String> = tunnel.forwards.iter().map(|f| f.to_string()).collect();
            req.stream(
                "stdout",
                &format!(
                    "tunnel {} to {}: {}\n",
                    tunnel.name,
                    tunnel.master.endpoint().destination,
                    forwards.join(", ")
                ),
            );
        }
        if profile.hosts.is_empty() {
            return Ok(ExecuteOutcome::ok());
        }
        // Masters one by one: any of them may ask something in this cell.
        for h in &profile.hosts {
            self.ssh
                .master(Some(req), &h.plan.endpoint)
                .await
                .map_err(|e| failed_with(e.to_string()))?;
        }
        let hosts: Vec<(Rc<SshHost>, u32)> = profile
            .hosts
            .iter()
            .map(|h| (SshHost::new(self.ssh.clone(), h.plan.clone()), h.n))
            .collect();
        let mut probes = tokio::task::JoinSet::new();
        for (host, _) in &hosts {
            let host = host.clone();
            probes.spawn_local(async move { host.probe().await });
        }
        let mut problems = Vec::new();
        while let Some(done) = probes.join_next().await {
            if let Ok(Err(e)) = done {
                problems.push(e);
            }
        }
        if !problems.is_empty() {
            for (host, _) in &hosts {
                host.release().await;
            }
            problems.sort();
            return Err(failed("EngineError", problems.join("\n"), problems));
        }
        let total: u32 = hosts.iter().map(|(_, n)| n).sum();
        let names: Vec<String> = hosts
            .iter()
            .map(|(h, n)| format!("{n} on {}", h.host()))
            .collect();
        match self
            .engines
            .launch(&HostsLauncher(hosts), total, timeout)
            .await
        {
            Ok(ids) => {
                req.stream(
                    "stdout",
                    &format!(
                        "Started {total} engines of profile {name} ({}) in {}: {} {}.\n",
                        names.join(", "),
                        human_duration(began.elapsed()),
                        if ids.len() == 1 { "id" } else { "ids" },
                        id_ranges(&ids)
                    ),
                );
                Ok(ExecuteOutcome::ok())
            }
            Err(e) => Err(self.engine_error(req, e, "Started")),
        }
    }

    /// `%engines profiles`: every profile, what it starts, or where to write one.
    pub(super) fn list_profiles(&self, req: &Request) {
        let dir = profiles::dir();
        let names = profiles::names(&dir);
        if names.is_empty() {
            req.stream(
                "stdout",
                &format!(
                    "No profiles in {}. A profile is NAME.toml there:\n\n\
                     [[hosts]]\nhost = \"me@node1\"\nn = 4\n\n[[tunnels]]\n\
                     args = \"-L 5432:localhost:5432 db.example.org\"\n",
                    dir.display()
                ),
            );
            return;
        }
        let mut t = Table::new(&[
            ("profile", Align::Left),
            ("engines", Align::Left),
            ("tunnels", Align::Left),
            ("description", Align::Left),
        ]);
        t.missing_text = "-";
        for name in names {
            match profiles::load(&dir, &name) {
                Ok(p) => {
                    let engines: Vec<String> = p
                        .hosts
                        .iter()
                        .map(|h| format!("{}×{}", h.n, h.plan.endpoint.destination))
                        .collect();
                    let tunnels: Vec<String> = p.tunnels.iter().map(|t| t.args.clone()).collect();
                    t.rows.push(vec![
                        name.into(),
                        engines.join(", ").into(),
                        tunnels.join("; ").into(),
                        p.description.map_or(TableCell::Missing, TableCell::from),
                    ]);
                }
                Err(e) => t.rows.push(vec![
                    name.into(),
                    TableCell::Missing,
                    TableCell::Missing,
                    format!("error: {e}").into(),
                ]),
            }
        }
        t.footer = Some(format!("in {}", dir.display()));
        req.publish("display_data", &json!({"data": t.bundle(), "metadata": {}}));
    }
}
