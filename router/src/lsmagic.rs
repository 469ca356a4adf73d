//! `%lsmagic`, the router's own magic: lists every magic the families declare,
//! in the order they were given, and says where everything else goes.

use pxkernel_contract::MagicError;
use pxkernel_contract::display::definition_table;
use pxkernel_contract::parse::{ParseError, parse_options, split_args};
use pxkernel_contract::spec::{Form, Index, MagicSpec};
use pxkernel_kernel::protocol::MimeBundle;
use pxkernel_kernel::server::Request;
use serde_json::json;

/// `%lsmagic`.
pub const LSMAGIC: MagicSpec = MagicSpec {
    name: "lsmagic",
    form: Form::Line,
    summary: "List the magics pxkernel runs itself; every other magic goes to the home kernel.",
    usage: "%lsmagic",
    options: &[],
    subcommands: &[],
    details: "Magics not in this list (%timeit, %matplotlib, %%time, !cmd, …) are passed \
to the home kernel unchanged. Add ? to a magic for its help, e.g. %lsmagic?",
};

/// Show the table of the magics in `index` as this cell's result.
pub fn run(req: &Request, args: &str, index: &Index, home: &str) -> Result<(), MagicError> {
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
        &json!({"execution_count": req.execution_count, "data": table(index, home), "metadata": {}}),
    );
    Ok(())
}

/// The table: every declared magic in its forms with its summary, then where the rest goes.
fn table(index: &Index, home: &str) -> MimeBundle {
    let rows: Vec<(String, String)> = index
        .specs()
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

    const CELLS: MagicSpec = MagicSpec {
        name: "cells",
        form: Form::Both,
        summary: "Both forms.",
        usage: "%cells",
        options: &[],
        subcommands: &[],
        details: "",
    };

    #[test]
    fn lists_every_declared_magic_in_its_forms() {
        let index = Index::new(vec![&LSMAGIC, &CELLS]);
        let bundle = table(&index, "python3");
        let text = bundle["text/plain"].as_str().unwrap();
        let html = bundle["text/html"].as_str().unwrap();
        for m in index.specs() {
            let row = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", m.forms())))
                .unwrap_or_else(|| panic!("%{} is not listed:\n{text}", m.name));
            assert!(row.ends_with(m.summary), "{row}");
            assert_eq!(row.contains(&format!("%%{}", m.name)), m.cell(), "{row}");
            assert!(html.contains(&format!("<code>{}</code>", m.forms())));
        }
        assert!(text.contains("%lsmagic  "), "{text}");
        assert!(text.contains("%cells, %%cells  "), "{text}");
        assert!(text.contains("home kernel (python3)"), "{text}");
    }
}
