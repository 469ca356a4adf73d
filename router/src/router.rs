//! The router: pxkernel's [`Handler`]. It holds the magic families as a list,
//! builds the name index, `%lsmagic` and completion from what they declare,
//! routes each cell to the family that owns it or to the home kernel, and sends
//! interrupt and shutdown to every family. It names no family: the list comes
//! from whoever builds the router.
//!
//! A cell may mix plain code with our line magics (and lines a family claims):
//! it runs piece by piece, in order, and stops at the first error.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use pxkernel_contract::display;
use pxkernel_contract::home::Forward;
use pxkernel_contract::parse::{Invocation, invocation};
use pxkernel_contract::{
    Call, Claim, CompletionKind, Family, Home, Index, Interrupted, MagicError, MagicSpec,
    MakeFamily, Shared, outcome,
};
use pxkernel_kernel::kernelspec::Location;
use pxkernel_kernel::protocol::content::{
    CompleteReply, CompleteRequest, ExecuteRequest, HelpLink, InspectRequest, IsCompleteRequest,
    KernelInfoReply, LanguageInfo,
};
use pxkernel_kernel::protocol::{Channel, PROTOCOL_VERSION, text_bundle, to_raw};
use pxkernel_kernel::server::{ExecuteOutcome, Handler, Publisher, Reply, Request};
use serde_json::{Value, json};

use crate::cells::{python_piece, split_at_our_magic};
use crate::lsmagic::{self, LSMAGIC};

/// How pxkernel was configured at launch.
#[derive(Clone, Debug)]
pub struct Config {
    /// The home kernel's kernelspec name.
    pub home: String,
    /// Where `pxkernel install` found the home's kernelspec, used while it is there.
    pub home_recorded: Option<Location>,
    /// The home's language_info recorded at install time, so kernel_info is right
    /// before the home kernel has answered.
    pub language_info: Option<LanguageInfo>,
}

/// Who runs a magic of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The router itself (`%lsmagic`).
    Router,
    /// The family at this place in the list.
    Family(usize),
}

/// pxkernel's handler: the home kernel and the families.
pub struct Router {
    config: Config,
    home: Rc<Home>,
    families: Vec<Box<dyn Family>>,
    index: Index,
    owners: Vec<(&'static str, Owner)>,
}

impl Router {
    /// Start the home kernel in the background, make the families, index their magics.
    pub fn new(config: Config, publisher: Publisher, families: &[MakeFamily]) -> Router {
        let home = Home::spawn(&config.home, config.home_recorded.clone(), publisher);
        Router::with_home(config, home, families)
    }

    /// A router over a home kernel made elsewhere (tests attach one that already runs).
    pub fn with_home(config: Config, home: Rc<Home>, families: &[MakeFamily]) -> Router {
        let shared = Shared::default();
        let families: Vec<Box<dyn Family>> =
            families.iter().map(|make| make(&home, &shared)).collect();
        let mut specs: Vec<&'static MagicSpec> = vec![&LSMAGIC];
        let mut owners = vec![(LSMAGIC.name, Owner::Router)];
        for (i, family) in families.iter().enumerate() {
            for spec in family.magics() {
                if owners.iter().any(|(name, _)| *name == spec.name) {
                    tracing::error!(
                        "%{} is declared twice; the first declaration wins",
                        spec.name
                    );
                    continue;
                }
                specs.push(spec);
                owners.push((spec.name, Owner::Family(i)));
            }
        }
        Router {
            config,
            home,
            families,
            index: Index::new(specs),
            owners,
        }
    }

    /// The home kernel.
    pub fn home(&self) -> &Rc<Home> {
        &self.home
    }

    /// Every magic the router serves, its own first.
    pub fn index(&self) -> &Index {
        &self.index
    }

    fn owner(&self, name: &str) -> Option<Owner> {
        self.owners
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, owner)| *owner)
    }

    /// The first family claiming the line that opens `code`.
    fn claim<'c>(&self, code: &'c str) -> Option<(usize, Claim<'c>)> {
        self.families
            .iter()
            .enumerate()
            .find_map(|(i, f)| f.claim(code).map(|c| (i, c)))
    }

    /// Whether `line` alone is ours: a line magic we serve at column 0, or a line
    /// a family claims.
    fn calls_ours(&self, line: &str) -> bool {
        match invocation(line) {
            Some(Invocation::Line { name, .. }) => {
                line.starts_with('%') && self.index.owns(name, false)
            }
            Some(_) => false,
            None => self.claim(line).is_some(),
        }
    }

    /// Run a magic the index holds.
    async fn run_magic(&self, call: Call<'_>) -> Result<ExecuteOutcome, MagicError> {
        match self.owner(call.name) {
            Some(Owner::Family(i)) => self.families[i].run(call).await,
            Some(Owner::Router) => {
                lsmagic::run(call.req, call.args, &self.index, &self.config.home)
                    .map(|()| ExecuteOutcome::ok())
            }
            None => Err(MagicError::usage(
                call.name,
                "not one of pxkernel's magics (%lsmagic lists them)",
            )),
        }
    }

    /// Run `code` (the cell, or what is left of it): our magics here, the rest
    /// at home or with the family that takes plain cells while it does.
    fn execute_code<'a>(
        &'a self,
        req: &'a Request,
        content: &'a ExecuteRequest,
        code: &'a str,
    ) -> Pin<Box<dyn Future<Output = ExecuteOutcome> + 'a>> {
        Box::pin(async move {
            let call = |name, args, body, into| Call {
                req,
                content,
                name,
                args,
                body,
                into,
            };
            if let Some((i, claim)) = self.claim(code) {
                let run =
                    self.families[i].run(call(claim.magic, claim.args, claim.body, claim.into));
                let done = outcome(req, run.await);
                return self.then_rest(req, content, done, claim.rest).await;
            }
            match invocation(code) {
                Some(Invocation::Help { name }) if self.index.find(name).is_some() => {
                    let help = self.index.find(name).map(|m| m.help()).unwrap_or_default();
                    ExecuteOutcome::Ok {
                        payload: vec![display::page_payload(&help)],
                        user_expressions: Default::default(),
                    }
                }
                Some(Invocation::Cell { name, args, body }) if self.index.owns(name, true) => {
                    outcome(
                        req,
                        self.run_magic(call(name, args, Some(body), None)).await,
                    )
                }
                Some(Invocation::Line { name, args, rest }) if self.index.owns(name, false) => {
                    let done = outcome(req, self.run_magic(call(name, args, None, None)).await);
                    self.then_rest(req, content, done, rest).await
                }
                _ => {
                    let taker = self
                        .families
                        .iter()
                        .find_map(|f| f.plain_cells().map(|magic| (f, magic)));
                    if let Some((family, magic)) = taker {
                        return outcome(req, family.run(call(magic, "", Some(code), None)).await);
                    }
                    match split_at_our_magic(code, |line| self.calls_ours(line)) {
                        Some((plain, ours)) if self.home_finds_complete(req, plain).await => {
                            let piece = match self.home.is_python(req).await {
                                Ok(true) => Cow::Owned(python_piece(plain)),
                                _ => Cow::Borrowed(plain),
                            };
                            let done = self.home.execute(req, content, &piece).await;
                            self.then_rest(req, content, done, ours).await
                        }
                        _ => self.home.execute(req, content, code).await,
                    }
                }
            }
        })
    }

    /// After a piece of a cell that succeeded, the rest of the cell; else that piece's outcome.
    async fn then_rest(
        &self,
        req: &Request,
        content: &ExecuteRequest,
        outcome: ExecuteOutcome,
        rest: &str,
    ) -> ExecuteOutcome {
        match outcome {
            ExecuteOutcome::Ok { .. } if !rest.trim().is_empty() => {
                self.execute_code(req, content, rest).await
            }
            other => other,
        }
    }

    /// Whether the home kernel sees `code` as a whole statement: not open inside
    /// a string or bracket, so the line after it may start with one of our magics.
    /// A home kernel that cannot tell ("unknown", or no answer) is trusted.
    async fn home_finds_complete(&self, req: &Request, code: &str) -> bool {
        let fwd = Forward {
            channel: Channel::Shell,
            msg_type: "is_complete_request",
            content: to_raw(&json!({ "code": code })),
            count: None,
            expects_reply: true,
        };
        match self.home.forward(req, fwd).await {
            Ok(Some(reply)) => reply
                .parse_content::<Value>()
                .map(|v| v["status"] != "incomplete" && v["status"] != "invalid")
                .unwrap_or(true),
            _ => true,
        }
    }

    /// Forward any request to the home kernel and return its reply as ours.
    async fn relay_request(&self, req: &Request, channel: Channel) -> Option<Reply> {
        let expects_reply = req.msg_type().ends_with("_request");
        let fwd = Forward {
            channel,
            msg_type: req.msg_type(),
            content: req.message.content.clone(),
            count: None,
            expects_reply,
        };
        match self.home.forward(req, fwd).await {
            Ok(Some(m)) => Some(Reply {
                msg_type: m.header.msg_type.clone(),
                content: m.content,
                metadata: m.metadata,
                buffers: m.buffers,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(
                    msg_type = req.msg_type(),
                    "not answered by the home kernel: {e}"
                );
                expects_reply.then(|| {
                    Reply::new(
                        &pxkernel_kernel::protocol::content::reply_type(req.msg_type()),
                        &json!({"status": "error", "ename": "HomeKernelUnavailable",
                                "evalue": e.to_string(), "traceback": []}),
                    )
                })
            }
        }
    }

    async fn complete(&self, req: &Request) -> Option<Reply> {
        let Ok(request) = req.message.parse_content::<CompleteRequest>() else {
            return self.relay_request(req, Channel::Shell).await;
        };
        let (code, cursor) = (request.code.as_str(), request.cursor_pos);
        let mut theirs = None;
        for family in &self.families {
            theirs = family.complete(code, cursor).await;
            if theirs.is_some() {
                break;
            }
        }
        let Some(ours) = theirs.or_else(|| self.index.complete(code, cursor)) else {
            return self.relay_request(req, Channel::Shell).await;
        };
        let mut reply = CompleteReply {
            status: "ok".to_owned(),
            matches: ours.matches,
            cursor_start: ours.start,
            cursor_end: ours.end,
            metadata: Default::default(),
        };
        // Magic names: the home kernel's own magics (%timeit…) complete too.
        if ours.kind == CompletionKind::MagicName
            && let Some(home) = self.relay_request(req, Channel::Shell).await
            && let Ok(theirs) = serde_json::from_str::<CompleteReply>(home.content.get())
            && theirs.status == "ok"
            && theirs.cursor_start == reply.cursor_start
        {
            for m in theirs.matches {
                if !reply.matches.contains(&m) {
                    reply.matches.push(m);
                }
            }
        }
        Some(Reply::new("complete_reply", &reply))
    }

    async fn inspect(&self, req: &Request) -> Option<Reply> {
        if let Ok(request) = req.message.parse_content::<InspectRequest>()
            && let Some(spec) = self.index.magic_at(&request.code, request.cursor_pos)
        {
            return Some(Reply::new(
                "inspect_reply",
                &json!({"status": "ok", "found": true, "data": text_bundle(spec.help()),
                        "metadata": {}}),
            ));
        }
        self.relay_request(req, Channel::Shell).await
    }

    async fn is_complete(&self, req: &Request) -> Option<Reply> {
        if let Ok(request) = req.message.parse_content::<IsCompleteRequest>() {
            match invocation(&request.code) {
                Some(Invocation::Cell { name, .. }) if self.index.owns(name, true) => {
                    // Like IPython: a cell magic goes on until an empty line.
                    let status = if request.code.ends_with('\n') {
                        "complete"
                    } else {
                        "incomplete"
                    };
                    return Some(Reply::new(
                        "is_complete_reply",
                        &json!({"status": status, "indent": ""}),
                    ));
                }
                Some(Invocation::Line { name, rest, .. })
                    if self.index.owns(name, false) && rest.trim().is_empty() =>
                {
                    return Some(Reply::new(
                        "is_complete_reply",
                        &json!({"status": "complete"}),
                    ));
                }
                Some(Invocation::Help { name }) if self.index.find(name).is_some() => {
                    return Some(Reply::new(
                        "is_complete_reply",
                        &json!({"status": "complete"}),
                    ));
                }
                _ => {}
            }
        }
        self.relay_request(req, Channel::Shell).await
    }
}

impl Handler for Router {
    fn kernel_info(&self) -> KernelInfoReply {
        let language_info = self
            .config
            .language_info
            .clone()
            .or_else(|| self.home.kernel_info().map(|i| i.language_info))
            .unwrap_or_else(|| LanguageInfo {
                name: "python".to_owned(),
                ..LanguageInfo::default()
            });
        KernelInfoReply {
            status: "ok".to_owned(),
            protocol_version: PROTOCOL_VERSION.to_owned(),
            implementation: "pxkernel".to_owned(),
            implementation_version: env!("CARGO_PKG_VERSION").to_owned(),
            language_info,
            banner: format!(
                "pxkernel {} — home kernel: {}. %lsmagic lists pxkernel's magics.",
                env!("CARGO_PKG_VERSION"),
                self.config.home
            ),
            help_links: vec![HelpLink {
                text: "pxkernel magics".to_owned(),
                url: "https://github.com/pxkernel/pxkernel#readme".to_owned(),
            }],
            debugger: false,
            supported_features: Some(Vec::new()),
        }
    }

    async fn execute(&self, req: &Request, content: &ExecuteRequest) -> ExecuteOutcome {
        for family in &self.families {
            for notice in family.notices() {
                req.stream("stderr", &format!("pxkernel: {notice}\n"));
            }
        }
        self.execute_code(req, content, &content.code).await
    }

    async fn shell(&self, req: &Request) -> Option<Reply> {
        match req.msg_type() {
            "complete_request" => self.complete(req).await,
            "inspect_request" => self.inspect(req).await,
            "is_complete_request" => self.is_complete(req).await,
            _ => self.relay_request(req, Channel::Shell).await,
        }
    }

    async fn interrupt(&self) {
        let mut stopped = false;
        let mut home_too = false;
        for family in &self.families {
            match family.interrupt() {
                Interrupted::Nothing => {}
                Interrupted::Stopped => stopped = true,
                Interrupted::StoppedAndHome => (stopped, home_too) = (true, true),
            }
        }
        if !stopped || home_too {
            self.home.interrupt().await;
        }
    }

    async fn shutdown(&self, _restart: bool) {
        let families = async {
            for family in &self.families {
                family.shutdown().await;
            }
        };
        tokio::join!(families, self.home.shutdown());
    }
}
