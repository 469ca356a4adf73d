//! The sql family as the router sees it: [`SqlFamily`] runs `%sql` / `%%sql`,
//! claims jupysql's `NAME << %sql …` lines, completes table names after
//! `FROM`/`JOIN`, cancels a running query on interrupt and closes every
//! connection at shutdown.

use std::rc::Rc;

use pxkernel_contract::spec::CompletionKind;
use pxkernel_contract::{
    Call, Claim, Completion, Family, Home, Interrupted, LocalFuture, MagicError, MagicSpec,
};
use pxkernel_kernel::server::ExecuteOutcome;

use crate::claim::store_form;
use crate::commands::{Sql, table_context};
use crate::magics::MAGICS;
use pxkernel_ssh::Ssh;

/// The sql family: connections and the `%sql` magic.
pub struct SqlFamily {
    sql: Sql,
    home: Rc<Home>,
}

impl SqlFamily {
    /// The family; results go to (and `:name` comes from) `home`.
    pub fn new(home: &Rc<Home>, ssh: Rc<Ssh>) -> SqlFamily {
        SqlFamily {
            sql: Sql::new(ssh),
            home: home.clone(),
        }
    }

    /// The family as the router takes it.
    pub fn boxed(home: &Rc<Home>, shared: &pxkernel_contract::Shared) -> Box<dyn Family> {
        Box::new(SqlFamily::new(home, Ssh::shared(shared)))
    }
}

impl Family for SqlFamily {
    fn magics(&self) -> &'static [MagicSpec] {
        MAGICS
    }

    fn run<'a>(&'a self, call: Call<'a>) -> LocalFuture<'a, Result<ExecuteOutcome, MagicError>> {
        Box::pin(
            self.sql
                .run(call.req, &self.home, call.args, call.body, call.into),
        )
    }

    fn claim<'c>(&self, code: &'c str) -> Option<Claim<'c>> {
        store_form(code).map(|form| Claim {
            magic: "sql",
            args: form.args,
            body: form.body,
            into: Some(form.name),
            rest: form.rest,
        })
    }

    fn complete<'a>(&'a self, code: &'a str, cursor: usize) -> LocalFuture<'a, Option<Completion>> {
        Box::pin(async move {
            let (start, prefix) = table_context(code, cursor)?;
            let matches = self
                .sql
                .tables()
                .await
                .into_iter()
                .filter(|t| t.starts_with(&prefix))
                .collect();
            Some(Completion {
                kind: CompletionKind::Option,
                matches,
                start,
                end: cursor,
            })
        })
    }

    fn interrupt(&self) -> Interrupted {
        if self.sql.interrupt() {
            Interrupted::Stopped
        } else {
            Interrupted::Nothing
        }
    }

    fn shutdown(&self) -> LocalFuture<'_, ()> {
        self.sql.shutdown();
        Box::pin(async {})
    }
}
