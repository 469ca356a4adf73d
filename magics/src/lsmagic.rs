//! `%lsmagic`: lists the magics pxkernel runs itself, from what the registry declares.

use pxkernel_kernel::protocol::MimeBundle;
use pxkernel_kernel::server::Request;
use serde_json::json;

use crate::display::definition_table;
use crate::parse::{ParseError, parse_options, split_args};
use crate::registry::{LSMAGIC, MAGICS};
use crate::session::MagicError;

/// Show the table of pxkernel's magics as this cell's result.
pub fn run(req: &Request, args: &str, home: &str) -> Result<(), MagicError> {
    let parsed = parse_options("lsmagic", LSMAGIC.options, &split_args("lsmagic", args)?)?;
    if let Some(extra) = parsed.positional.first() {
        return Err(ParseError::UnexpectedArgument {
            magic: "lsmagic".to_owned(),
            arg: extra.clone(),
        }
        .into());
    }
    req.publish(
        "execute_result",
        &json!({"execution_count": req.execution_count, "data": table(home), "metadata": {}}),
    );
    Ok(())
}

/// The table: every declared magic in its forms with its summary, then where the rest goes.
fn table(home: &str) -> MimeBundle {
    let rows: Vec<(String, String)> = MAGICS
        .iter()
        .map(|m| (m.forms(), m.summary.to_owned()))
        .collect();
    let footer = format!(
        "Every other magic (%timeit, %%time, %matplotlib, !cmd, …) and all plain code run \
         in the home kernel ({home}). Add ? to a magic for its help."
    );
    definition_table("Magics run by pxkernel:", &rows, &footer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_declared_magic_in_its_forms() {
        let bundle = table("python3");
        let text = bundle["text/plain"].as_str().unwrap();
        let html = bundle["text/html"].as_str().unwrap();
        for m in MAGICS {
            let row = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", m.forms())))
                .unwrap_or_else(|| panic!("%{} is not listed:\n{text}", m.name));
            assert!(row.ends_with(m.summary), "{row}");
            assert_eq!(row.contains(&format!("%%{}", m.name)), m.cell(), "{row}");
            assert!(html.contains(&format!("<code>{}</code>", m.forms())));
        }
        assert!(text.contains("%lsmagic  "), "{text}");
        assert!(text.contains("%px, %%px  "), "{text}");
        assert!(text.contains("home kernel (python3)"), "{text}");
    }
}
