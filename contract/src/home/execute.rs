//! The execute_request path to the home kernel: a cell (or a piece of one) sent
//! with the frontend's options, its reply turned into the cell's outcome, and
//! the execution count kept in step, so that an IPython home numbers its history
//! as we number our cells.

use std::rc::Rc;

use pxkernel_kernel::protocol::content::{ExecuteReply, ExecuteRequest};
use pxkernel_kernel::protocol::{Channel, Message, to_raw};
use pxkernel_kernel::server::{ExecuteOutcome, Request};
use serde_json::json;

use super::{Forward, Home, HomeError};
use crate::error::{MagicError, report};

/// The execute_request sent home: the frontend's, with this piece's code.
#[derive(serde::Serialize)]
struct HomeExecute<'a> {
    code: &'a str,
    silent: bool,
    store_history: bool,
    user_expressions: &'a serde_json::Map<String, serde_json::Value>,
    allow_stdin: bool,
    stop_on_error: bool,
}

/// The one field of an execute_reply the count tracking reads.
#[derive(serde::Deserialize)]
struct CountOnly {
    execution_count: Option<u32>,
}

impl Home {
    /// Run `code` in the home kernel as (part of) the cell of `req`: its output
    /// relayed, its reply turned into the cell's outcome (an error already shown).
    pub async fn execute(
        self: &Rc<Self>,
        req: &Request,
        content: &ExecuteRequest,
        code: &str,
    ) -> ExecuteOutcome {
        let counts = !content.silent && content.store_history;
        // A later piece of a cell run in pieces: the cell is one history entry.
        let later_piece = counts && self.has_stored(req.execution_count);
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
        let failed = |evalue: String| report(req, &MagicError::failed("HomeKernelError", evalue));
        match self.forward(req, fwd).await {
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
                Err(e) => failed(format!("unreadable execute_reply: {e}")),
            },
            Ok(None) => failed("the home kernel did not answer the execute request".to_owned()),
            Err(e) => report(req, &MagicError::Home(e)),
        }
    }

    /// Whether an IPython home has stored a cell under our execution count `n`
    /// already: an earlier piece of a cell run in pieces. IPython refuses a
    /// second history entry with one count.
    pub fn has_stored(&self, n: u32) -> bool {
        self.home_next_count.get() == n.checked_add(1)
    }

    /// Forward a request to the home kernel and relay everything it causes.
    /// Returns the home's reply (None when none was expected or it never came).
    pub async fn forward(
        self: &Rc<Self>,
        req: &Request,
        fwd: Forward<'_>,
    ) -> Result<Option<Message>, HomeError> {
        let link = self.ready(req).await?;
        let ipython = link.info.implementation == "ipython";
        if let Some(n) = fwd.count
            && ipython
            && self.home_next_count.get() != Some(n)
        {
            // Sent just ahead of the cell, without waiting: the home kernel runs
            // its shell requests in order, so the cell sees the count set.
            let sync = json!({
                "code": format!("get_ipython().execution_count = {n}"),
                "silent": true, "store_history": false, "allow_stdin": false,
                "stop_on_error": false, "user_expressions": {},
            });
            link.send_detached(Channel::Shell, link.message("execute_request", &sync));
            self.home_next_count.set(Some(n));
        }
        let counted = fwd.count.is_some();
        let reply = self
            .exchange(&link, req, fwd, req.message.buffers.clone())
            .await?;
        if counted && let Some(r) = &reply {
            let home_count = r
                .parse_content::<CountOnly>()
                .ok()
                .and_then(|c| c.execution_count)
                .map(|c| c + 1);
            self.home_next_count.set(home_count.filter(|_| ipython));
        }
        Ok(reply)
    }
}
