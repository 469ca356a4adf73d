//! The home kernel's side of `%sql`: `:name` parameters read from its variables,
//! a full result stored in it (`-o NAME`, `NAME <<`), both through the helper
//! installed there on first use.

use std::rc::Rc;
use std::time::Instant;

use pxkernel_contract::MagicError;
use pxkernel_contract::home::{Home, HomeError};
use pxkernel_kernel::server::{ExecuteOutcome, Request};

use super::{Sql, failure};
use crate::driver::Param;
use crate::transfer;
use crate::value::Rows;

fn home_failure(e: &HomeError) -> MagicError {
    failure("HomeKernelError", e.to_string())
}

impl Sql {
    pub(super) async fn variables(
        &self,
        req: &Request,
        home: &Rc<Home>,
        names: &[String],
    ) -> Result<Vec<Param>, MagicError> {
        let reply = self
            .helper_call(req, home, transfer::encode_get(names), Vec::new())
            .await?;
        transfer::decode_values(&reply, names).map_err(|e| failure("NameError", e))
    }

    pub(super) async fn store(
        &self,
        req: &Request,
        home: &Rc<Home>,
        name: &str,
        rows: &Rows,
    ) -> Result<ExecuteOutcome, MagicError> {
        let started = Instant::now();
        let (meta, buffers) = transfer::encode_store(name, rows);
        tracing::debug!(elapsed = ?started.elapsed(), "result encoded for the home kernel");
        let reply = self.helper_call(req, home, meta, buffers).await?;
        {
            {
                let kind = reply
                    .get("type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("value")
                    .to_owned();
                req.stream(
                    "stdout",
                    &format!(
                        "Stored {} row{} × {} column{} in {name} ({kind}) in {:.2} s.\n",
                        rows.rows.len(),
                        if rows.rows.len() == 1 { "" } else { "s" },
                        rows.columns.len(),
                        if rows.columns.len() == 1 { "" } else { "s" },
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(ExecuteOutcome::ok())
            }
        }
    }

    /// A round trip to the helper in the home kernel (installed on first use).
    async fn helper_call(
        &self,
        req: &Request,
        home: &Rc<Home>,
        data: serde_json::Value,
        buffers: Vec<Vec<u8>>,
    ) -> Result<serde_json::Value, MagicError> {
        let fail_home = |e: HomeError| home_failure(&e);
        if !home.is_python(req).await.map_err(fail_home)? {
            return Err(failure(
                "UsageError",
                "-o, NAME << and :name need a Python home kernel".to_owned(),
            ));
        }
        home.install(req, "sql", transfer::HELPER)
            .await
            .map_err(fail_home)?;
        let reply = home
            .comm_call(req, transfer::TARGET, data, buffers)
            .await
            .map_err(fail_home)?;
        if reply.get("ok").and_then(|v| v.as_bool()) == Some(true) {
            Ok(reply)
        } else {
            let err = reply
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("the home kernel's helper failed")
                .to_owned();
            let (ename, evalue) = err.split_once(": ").unwrap_or(("Error", err.as_str()));
            Err(MagicError::Failed {
                ename: ename.to_owned(),
                evalue: evalue.to_owned(),
                traceback: vec![err.clone()],
            })
        }
    }
}
