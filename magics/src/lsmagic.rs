//! `%lsmagic`: lists the magics pxkernel runs itself.

use pxkernel_kernel::server::Request;
use serde_json::json;

use crate::display::definition_table;
use crate::parse::{parse_options, split_args};
use crate::registry::{Form, LSMAGIC, MAGICS};
use crate::session::MagicError;

/// Show the table of pxkernel's magics as this cell's result.
pub fn run(req: &Request, args: &str, home: &str) -> Result<(), MagicError> {
    let parsed = parse_options("lsmagic", LSMAGIC.options, &split_args("lsmagic", args)?)?;
    if let Some(extra) = parsed.positional.first() {
        return Err(crate::parse::ParseError::UnexpectedArgument {
            magic: "lsmagic".to_owned(),
            arg: extra.clone(),
        }
        .into());
    }
    let rows: Vec<(String, String)> = MAGICS
        .iter()
        .map(|m| {
            let name = match m.form {
                Form::Line => format!("%{}", m.name),
                Form::Cell => format!("%%{}", m.name),
                Form::Both => format!("%{0}, %%{0}", m.name),
            };
            (name, m.summary.to_owned())
        })
        .collect();
    let footer = format!(
        "Every other magic (%timeit, %%time, %matplotlib, !cmd, …) and all plain code run \
         in the home kernel ({home}). Add ? to a magic for its help."
    );
    let data = definition_table("Magics run by pxkernel:", &rows, &footer);
    req.publish(
        "execute_result",
        &json!({"execution_count": req.execution_count, "data": data, "metadata": {}}),
    );
    Ok(())
}
