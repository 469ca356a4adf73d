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

/// The columns `s` takes in a terminal-style monospace font: East Asian wide
/// and fullwidth characters (and emoji) take two, combining marks and zero-width
/// characters none, everything else one. The ranges are the wide blocks of
/// Unicode's EastAsianWidth.txt, enough to keep CJK tables aligned.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    match u32::from(c) {
        0x0300..=0x036F | 0x200B..=0x200F | 0x20D0..=0x20FF | 0xFE00..=0xFE0F | 0xFE20..=0xFE2F => {
            0
        }
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// A two-column table (name, description) as text/plain and text/html.
pub fn definition_table(title: &str, rows: &[(String, String)], footer: &str) -> MimeBundle {
    let width = rows
        .iter()
        .map(|(k, _)| display_width(k))
        .max()
        .unwrap_or(0);
    let mut text = format!("{title}\n");
    for (k, v) in rows {
        let fill = " ".repeat(width - display_width(k));
        text.push_str(&format!("  {k}{fill}  {v}\n"));
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

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A cell of a [`Table`]: text, or a missing value shown distinctly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// A value.
    Text(String),
    /// No value (NULL).
    Missing,
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_owned())
    }
}

/// A table shown as aligned text/plain and an HTML table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Column names and alignment.
    pub columns: Vec<(String, Align)>,
    /// Rows of cells, one per column.
    pub rows: Vec<Vec<Cell>>,
    /// A line under the table (e.g. `3 rows`).
    pub footer: Option<String>,
    /// How a missing value reads in text.
    pub missing_text: &'static str,
}

impl Table {
    /// A table with these columns and no rows.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect(),
            rows: Vec::new(),
            footer: None,
            missing_text: "NULL",
        }
    }

    fn text_of<'a>(&'a self, c: &'a Cell) -> &'a str {
        match c {
            Cell::Text(t) => t,
            Cell::Missing => self.missing_text,
        }
    }

    /// The text/plain rendering: a header, a rule, aligned rows, the footer.
    pub fn to_text(&self) -> String {
        let width = display_width;
        let mut widths: Vec<usize> = self.columns.iter().map(|(n, _)| width(n)).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(widths.len()) {
                widths[i] = widths[i].max(width(&one_line(self.text_of(c))));
            }
        }
        let pad = |s: &str, w: usize, a: Align| {
            let fill = " ".repeat(w.saturating_sub(width(s)));
            match a {
                Align::Left => format!("{s}{fill}"),
                Align::Right => format!("{fill}{s}"),
            }
        };
        let mut out = String::new();
        let header: Vec<String> = self
            .columns
            .iter()
            .zip(&widths)
            .map(|((n, a), w)| pad(n, *w, *a))
            .collect();
        out.push_str(header.join("  ").trim_end());
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rule.join("  "));
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .zip(&self.columns)
                .map(|((c, w), (_, a))| pad(&one_line(self.text_of(c)), *w, *a))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        if let Some(f) = &self.footer {
            out.push_str(f);
            out.push('\n');
        }
        out
    }

    /// The text/html rendering, every value escaped.
    pub fn to_html(&self) -> String {
        let mut out = String::from("<table>\n<thead><tr>");
        for (n, a) in &self.columns {
            out.push_str(&format!(
                "<th style=\"text-align:{}\">{}</th>",
                css(*a),
                escape_html(n)
            ));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            out.push_str("<tr>");
            for (c, (_, a)) in row.iter().zip(&self.columns) {
                match c {
                    Cell::Text(t) => out.push_str(&format!(
                        "<td style=\"text-align:{}\">{}</td>",
                        css(*a),
                        escape_html(t)
                    )),
                    Cell::Missing => out.push_str(&format!(
                        "<td style=\"text-align:{};color:#999\"><em>{}</em></td>",
                        css(*a),
                        escape_html(self.missing_text)
                    )),
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        if let Some(f) = &self.footer {
            out.push_str(&format!("<p>{}</p>\n", escape_html(f)));
        }
        out
    }

    /// Both renderings as a MIME bundle.
    pub fn bundle(&self) -> MimeBundle {
        let mut b = MimeBundle::new();
        b.insert("text/plain".to_owned(), Value::String(self.to_text()));
        b.insert("text/html".to_owned(), Value::String(self.to_html()));
        b
    }
}

fn css(a: Align) -> &'static str {
    match a {
        Align::Left => "left",
        Align::Right => "right",
    }
}

/// Newlines and tabs in a text cell would break the alignment.
fn one_line(s: &str) -> String {
    if s.contains(['\n', '\t', '\r']) {
        s.replace('\n', "\\n")
            .replace('\t', " ")
            .replace('\r', "\\r")
    } else {
        s.to_owned()
    }
}

/// A duration as people read it: `850 ms`, `12 s`, `3 min 5 s`, `2 h 4 min`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{} ms", d.as_millis())
    } else if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
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

    #[test]
    fn table_text_aligns_and_marks_missing_values() {
        let mut t = Table::new(&[("id", Align::Right), ("name", Align::Left)]);
        t.rows.push(vec!["1".into(), "a\tb".into()]);
        t.rows.push(vec!["10".into(), Cell::Missing]);
        t.footer = Some("2 rows".into());
        assert_eq!(
            t.to_text(),
            "id  name\n--  ----\n 1  a b\n10  NULL\n2 rows\n"
        );
    }

    #[test]
    fn wide_characters_take_two_columns() {
        let cases = [
            ("ascii", "abc", 3),
            ("accented, precomposed", "café", 4),
            ("combining accent", "cafe\u{301}", 4),
            ("CJK", "東京", 4),
            ("Hangul", "서울", 4),
            ("fullwidth", "ＡＢ", 4),
            ("emoji", "🙂", 2),
            ("mixed", "a東b", 4),
        ];
        for (name, s, want) in cases {
            assert_eq!(display_width(s), want, "{name}");
        }
        let mut t = Table::new(&[("city", Align::Left), ("n", Align::Right)]);
        t.rows.push(vec!["東京".into(), "1".into()]);
        t.rows.push(vec!["Oslo".into(), "22".into()]);
        assert_eq!(t.to_text(), "city   n\n----  --\n東京   1\nOslo  22\n");
    }

    #[test]
    fn table_html_escapes_and_aligns() {
        let mut t = Table::new(&[("<n>", Align::Right)]);
        t.rows.push(vec!["<script>".into()]);
        t.rows.push(vec![Cell::Missing]);
        let h = t.to_html();
        assert!(h.contains("<th style=\"text-align:right\">&lt;n&gt;</th>"));
        assert!(h.contains("&lt;script&gt;"));
        assert!(h.contains("<em>NULL</em>"));
        assert!(!h.contains("<script>"));
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(human_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(human_duration(Duration::from_secs(12)), "12 s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3 min 5 s");
        assert_eq!(human_duration(Duration::from_secs(7440)), "2 h 4 min");
    }
}
