//! MIME-bundle builders shared by the magics: text tables with an HTML twin,
//! pager payloads, HTML escaping.

use pxkernel_kernel::protocol::MimeBundle;
use serde_json::{Value, json};

/// Escape text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An `execute_reply` payload that shows `text` in the frontend's pager (as `obj?` does).
pub fn page_payload(text: &str) -> Value {
    json!({"source": "page", "data": {"text/plain": text}, "start": 0})
}

/// A two-column table (name, description) as text/plain and text/html.
pub fn definition_table(title: &str, rows: &[(String, String)], footer: &str) -> MimeBundle {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = format!("{title}\n");
    for (k, v) in rows {
        text.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    if !footer.is_empty() {
        text.push('\n');
        text.push_str(footer);
        text.push('\n');
    }
    let mut html = format!("<p><strong>{}</strong></p>\n<table>\n", escape_html(title));
    for (k, v) in rows {
        html.push_str(&format!(
            "<tr><td style=\"text-align:left\"><code>{}</code></td><td style=\"text-align:left\">{}</td></tr>\n",
            escape_html(k),
            escape_html(v)
        ));
    }
    html.push_str("</table>\n");
    if !footer.is_empty() {
        html.push_str(&format!("<p>{}</p>\n", escape_html(footer)));
    }
    let mut bundle = MimeBundle::new();
    bundle.insert("text/plain".to_owned(), Value::String(text));
    bundle.insert("text/html".to_owned(), Value::String(html));
    bundle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn table_aligns_text_and_escapes_html() {
        let b = definition_table(
            "T",
            &[("%a".into(), "one".into()), ("%bbb".into(), "<two>".into())],
            "foot",
        );
        assert_eq!(b["text/plain"], "T\n  %a    one\n  %bbb  <two>\n\nfoot\n");
        assert!(b["text/html"].as_str().unwrap().contains("&lt;two&gt;"));
    }
}
