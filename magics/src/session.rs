//! Routes every request: pxkernel's own magics run here, everything else goes to
//! the home kernel. Implements the kernel crate's [`Handler`].

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use pxkernel_kernel::kernelspec::Location;
use pxkernel_kernel::protocol::content::{
    CompleteReply, CompleteRequest, ExecuteReply, ExecuteRequest, HelpLink, InspectRequest,
    IsCompleteRequest, KernelInfoReply, LanguageInfo,
};
use pxkernel_kernel::protocol::{Channel, PROTOCOL_VERSION, text_bundle, to_raw};
use pxkernel_kernel::server::{ExecuteOutcome, Handler, Publisher, Reply, Request};
use serde_json::{Value, json};

use crate::cells::{python_piece, split_at_our_magic, store_form};
use crate::home::{Forward, Home, HomeError};
use crate::parse::{Invocation, ParseError, invocation};
use crate::px::Px;
use crate::registry::{self, CompletionKind, Magic};
use crate::{display, lsmagic};

/// The execute_request sent home: the frontend's, with this piece's code.
#[derive(serde::Serialize)]
struct HomeExecute<'a> {
    code: &'a str,
    silent: bool,
    store_history: bool,
    user_expressions: &'a serde_json::Map<String, Value>,
    allow_stdin: bool,
    stop_on_error: bool,
}

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

/// The pxkernel handler.
pub struct PxKernel {
    config: Config,
    home: Rc<Home>,
    px: Px,
    sql: crate::sql::Sql,
    /// A `%px --local` cell is running in the home kernel too.
    local_running: std::cell::Cell<bool>,
}

/// A magic's failure, shown to the user as one `error` output.
#[derive(Debug, thiserror::Error)]
pub enum MagicError {
    /// Bad arguments.
    #[error(transparent)]
    Usage(#[from] ParseError),
}

impl MagicError {
    fn ename(&self) -> &'static str {
        match self {
            MagicError::Usage(_) => "UsageError",
        }
    }
}

impl PxKernel {
    /// Start the home kernel in the background and return the handler.
    pub fn new(config: Config, publisher: Publisher) -> PxKernel {
        let home = Home::spawn(&config.home, config.home_recorded.clone(), publisher);
        let px = Px::new(&config.home);
        PxKernel {
            config,
            home,
            px,
            sql: crate::sql::Sql::default(),
            local_running: std::cell::Cell::new(false),
        }
    }

    /// The home kernel.
    pub fn home(&self) -> &Rc<Home> {
        &self.home
    }

    fn fail(&self, req: &Request, ename: &str, evalue: &str) -> ExecuteOutcome {
        let traceback = vec![format!("{ename}: {evalue}")];
        req.error(ename, evalue, &traceback);
        ExecuteOutcome::Error {
            ename: ename.to_owned(),
            evalue: evalue.to_owned(),
            traceback,
        }
    }

    fn home_failed(&self, req: &Request, e: &HomeError) -> ExecuteOutcome {
        let ename = match e {
            HomeError::Died { .. } => "HomeKernelDied",
            HomeError::Start { .. } => "HomeKernelUnavailable",
            _ => "HomeKernelUnavailable",
        };
        self.fail(req, ename, &e.to_string())
    }

    /// Run code in the home kernel as (part of) this cell.
    async fn execute_at_home(
        &self,
        req: &Request,
        content: &ExecuteRequest,
        code: &str,
    ) -> ExecuteOutcome {
        let counts = !content.silent && content.store_history;
        // A later piece of a cell run in pieces: the cell is one history entry.
        let later_piece = counts && self.home.has_stored(req.execution_count);
        let counted = counts && !later_piece;
        let body = HomeExecute {
            code,
            silent: content.silent,
            store_history: content.store_history && !later_piece,
            user_expressions: &content.user_expressions,
            allow_stdin: content.allow_stdin,
            stop_on_error: content.stop_on_error,
        };
        let fwd = Forward {
            channel: Channel::Shell,
            msg_type: "execute_request",
            content: to_raw(&body),
            count: counted.then_some(req.execution_count),
            expects_reply: true,
        };
        match self.home.forward(req, fwd).await {
            Ok(Some(reply)) => match reply.parse_content::<ExecuteReply>() {
                Ok(r) => match r.status.as_str() {
                    "ok" => ExecuteOutcome::Ok {
                        payload: r.payload,
                        user_expressions: r.user_expressions,
                    },
                    "aborted" => ExecuteOutcome::Aborted,
                    _ => ExecuteOutcome::Error {
                        ename: r.ename.unwrap_or_default(),
                        evalue: r.evalue.unwrap_or_default(),
                        traceback: r.traceback.unwrap_or_default(),
                    },
                },
                Err(e) => self.fail(
                    req,
                    "HomeKernelError",
                    &format!("unreadable execute_reply: {e}"),
                ),
            },
            Ok(None) => self.fail(
                req,
                "HomeKernelError",
                "the home kernel did not answer the execute request",
            ),
            Err(e) => self.home_failed(req, &e),
        }
    }

    /// Run `code` (the cell, or what is left of it): our magics here, the rest
    /// at home or, under `%autopx`, on the engines. A cell mixing plain code with
    /// our line magics runs piece by piece, stopping at the first error.
    fn execute_code<'a>(
        &'a self,
        req: &'a Request,
        content: &'a ExecuteRequest,
        code: &'a str,
    ) -> Pin<Box<dyn Future<Output = ExecuteOutcome> + 'a>> {
        Box::pin(async move {
            if let Some(form) = store_form(code) {
                let outcome = self
                    .sql
                    .run(req, &self.home, form.args, form.body, Some(form.name))
                    .await
                    .unwrap_or_else(|e| self.fail(req, e.ename(), &e.to_string()));
                return self.then_rest(req, content, outcome, form.rest).await;
            }
            match invocation(code) {
                Some(Invocation::Help { name }) if registry::find(name).is_some() => {
                    let help = registry::find(name).map(|m| m.help()).unwrap_or_default();
                    ExecuteOutcome::Ok {
                        payload: vec![display::page_payload(&help)],
                        user_expressions: Default::default(),
                    }
                }
                Some(Invocation::Cell { name, args, body }) if registry::owns(name, true) => {
                    let result = match registry::find(name).map(|m| m.magic) {
                        None => Err(not_ours(name)),
                        Some(Magic::Px) => self.run_px(req, content, args, Some(body)).await,
                        Some(Magic::Sql) => {
                            self.sql.run(req, &self.home, args, Some(body), None).await
                        }
                        Some(
                            Magic::Lsmagic
                            | Magic::Autopx
                            | Magic::Pxresult
                            | Magic::Pxconfig
                            | Magic::Engines,
                        ) => Err(MagicError::Usage(ParseError::Usage {
                            magic: name.to_owned(),
                            reason: format!("there is no cell form: write %{name}, not %%{name}"),
                        })),
                    };
                    result.unwrap_or_else(|e| self.fail(req, e.ename(), &e.to_string()))
                }
                Some(Invocation::Line { name, args, rest }) if registry::owns(name, false) => {
                    let outcome = self
                        .run_line_magic(req, content, name, args)
                        .await
                        .unwrap_or_else(|e| self.fail(req, e.ename(), &e.to_string()));
                    self.then_rest(req, content, outcome, rest).await
                }
                _ if self.px.autopx() => self
                    .run_px(req, content, "", Some(code))
                    .await
                    .unwrap_or_else(|e| self.fail(req, e.ename(), &e.to_string())),
                _ => match split_at_our_magic(code) {
                    Some((plain, ours)) if self.home_finds_complete(req, plain).await => {
                        let piece = match self.home.is_python(req).await {
                            Ok(true) => Cow::Owned(python_piece(plain)),
                            _ => Cow::Borrowed(plain),
                        };
                        let outcome = self.execute_at_home(req, content, &piece).await;
                        self.then_rest(req, content, outcome, ours).await
                    }
                    _ => self.execute_at_home(req, content, code).await,
                },
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

    /// Run `%name args`: every declared magic has an arm here, and no other.
    async fn run_line_magic(
        &self,
        req: &Request,
        content: &ExecuteRequest,
        name: &str,
        args: &str,
    ) -> Result<ExecuteOutcome, MagicError> {
        let Some(spec) = registry::find(name) else {
            return Err(not_ours(name));
        };
        match spec.magic {
            Magic::Lsmagic => {
                lsmagic::run(req, args, &self.config.home).map(|()| ExecuteOutcome::ok())
            }
            Magic::Px => self.run_px(req, content, args, None).await,
            Magic::Autopx => {
                if !args.trim().is_empty() {
                    return Err(MagicError::Usage(ParseError::UnexpectedArgument {
                        magic: "autopx".to_owned(),
                        arg: args.trim().to_owned(),
                    }));
                }
                self.px.toggle_autopx(req);
                Ok(ExecuteOutcome::ok())
            }
            Magic::Pxresult => self.px.pxresult(req).await,
            Magic::Pxconfig => self.px.pxconfig(req, args).map(|()| ExecuteOutcome::ok()),
            Magic::Engines => self.px.engines_cmd(req, args).await,
            Magic::Sql => self.sql.run(req, &self.home, args, None, None).await,
        }
    }

    /// `%px` / `%%px` (and cells under `%autopx`), with `--local` also at home.
    async fn run_px(
        &self,
        req: &Request,
        content: &ExecuteRequest,
        args: &str,
        body: Option<&str>,
    ) -> Result<ExecuteOutcome, MagicError> {
        let plan = self.px.plan("px", args, body)?;
        if !plan.opts.local {
            return Ok(self.px.execute(req, &plan).await);
        }
        self.local_running.set(true);
        let (engines, home) = tokio::join!(
            self.px.execute(req, &plan),
            self.execute_at_home(req, content, &plan.code)
        );
        self.local_running.set(false);
        Ok(match (engines, home) {
            (ExecuteOutcome::Ok { .. }, other) => other,
            (failed, _) => failed,
        })
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
        if let Some((start, prefix)) =
            crate::sql::commands::table_context(&request.code, request.cursor_pos)
        {
            let matches: Vec<String> = self
                .sql
                .tables()
                .await
                .into_iter()
                .filter(|t| t.starts_with(&prefix))
                .collect();
            return Some(Reply::new(
                "complete_reply",
                &CompleteReply {
                    status: "ok".to_owned(),
                    matches,
                    cursor_start: start,
                    cursor_end: request.cursor_pos,
                    metadata: Default::default(),
                },
            ));
        }
        let Some(ours) = registry::complete(&request.code, request.cursor_pos) else {
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
            && let Some(spec) = registry::magic_at(&request.code, request.cursor_pos)
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
                Some(Invocation::Cell { name, .. }) if registry::owns(name, true) => {
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
                    if registry::owns(name, false) && rest.trim().is_empty() =>
                {
                    return Some(Reply::new(
                        "is_complete_reply",
                        &json!({"status": "complete"}),
                    ));
                }
                Some(Invocation::Help { name }) if registry::find(name).is_some() => {
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

/// A name the registry does not declare reached a magic's dispatch.
fn not_ours(name: &str) -> MagicError {
    MagicError::Usage(ParseError::Usage {
        magic: name.to_owned(),
        reason: "not one of pxkernel's magics (%lsmagic lists them)".to_owned(),
    })
}

impl Handler for PxKernel {
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
        if self.sql.interrupt() {
            return;
        }
        if !self.px.interrupt() || self.local_running.get() {
            self.home.interrupt().await;
        }
    }

    async fn shutdown(&self, _restart: bool) {
        self.sql.shutdown();
        tokio::join!(self.px.shutdown(), self.home.shutdown());
    }
}
