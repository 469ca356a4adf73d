//! MIME-bundle builders shared by the magics: text tables with an HTML twin
//! (aligned by Unicode display width), pager payloads, HTML escaping, durations.

use pxkernel_kernel::protocol::MimeBundle;
use serde_json::{Value, json};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

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

/// The columns `s` takes in a terminal-style monospace font, by Unicode's width
/// rules (UAX #11 and the emoji sequences of UTS #51) as the `unicode-width`
/// crate keeps them: East Asian wide and fullwidth characters and emoji take
/// two, combining marks and zero-width characters none, a ZWJ emoji sequence
/// two in all, everything else one.
pub fn display_width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Where a caret goes under the `index`-th character of `text` (0-based, clamped
/// to its end): the line that holds that character, and the blanks that reach its
/// column — a tab for a tab, as many spaces as each other character is wide.
pub fn caret_under(text: &str, index: usize) -> (&str, String) {
    let at = text
        .char_indices()
        .nth(index)
        .map_or(text.len(), |(i, _)| i);
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let blanks = text[start..at]
        .chars()
        .map(|c| match c {
            '\t' => "\t".to_owned(),
            c => " ".repeat(UnicodeWidthChar::width(c).unwrap_or(0)),
        })
        .collect();
    (text[start..end].trim_end_matches('\r'), blanks)
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
    fn widths_follow_unicode() {
        let cases = [
            ("ascii", "abc", 3),
            ("accented, precomposed", "café", 4),
            ("combining accent", "cafe\u{301}", 4),
            ("stacked combining marks", "a\u{301}\u{323}", 1),
            ("CJK", "東京", 4),
            ("Hangul", "서울", 4),
            ("Hangul jamo, composing", "\u{1100}\u{1161}", 2),
            ("fullwidth", "ＡＢ", 4),
            ("emoji in the old table", "🙂", 2),
            ("rocket", "🚀", 2),
            ("lightning, a wide symbol", "⚡", 2),
            ("white heavy check mark", "✅", 2),
            ("check mark, narrow", "✓", 1),
            ("ballot x, narrow", "✗", 1),
            ("heart with emoji presentation", "❤\u{fe0f}", 2),
            ("skin tone modifier sequence", "👍\u{1f3fd}", 2),
            ("ZWJ sequence", "👩\u{200d}💻", 2),
            ("family ZWJ sequence", "👨\u{200d}👩\u{200d}👧", 2),
            ("flag", "🇳🇴", 2),
            ("zero-width space", "a\u{200b}b", 2),
            ("soft hyphen", "a\u{ad}b", 2),
            ("mixed", "a東b🚀", 6),
        ];
        for (name, s, want) in cases {
            assert_eq!(display_width(s), want, "{name}");
        }
    }

    #[test]
    fn tables_with_wide_cells_line_up() {
        let mut t = Table::new(&[("city", Align::Left), ("n", Align::Right)]);
        t.rows.push(vec!["東京".into(), "1".into()]);
        t.rows.push(vec!["Oslo".into(), "22".into()]);
        assert_eq!(t.to_text(), "city   n\n----  --\n東京   1\nOslo  22\n");

        let mut t = Table::new(&[("status", Align::Left), ("task", Align::Left)]);
        t.rows.push(vec!["🚀".into(), "launch".into()]);
        t.rows.push(vec!["✓".into(), "done".into()]);
        t.rows.push(vec!["👩\u{200d}💻".into(), "code".into()]);
        assert_eq!(
            t.to_text(),
            "status  task\n------  ------\n🚀      launch\n✓       done\n👩\u{200d}💻      code\n"
        );

        let b = definition_table(
            "T",
            &[("🚀".into(), "a".into()), ("ab✓".into(), "b".into())],
            "",
        );
        assert_eq!(b["text/plain"], "T\n  🚀   a\n  ab✓  b\n");
    }

    #[test]
    fn carets_stand_under_their_character() {
        let cases: &[(&str, &str, usize, &str, &str)] = &[
            (
                "ascii",
                "select 1 +* 2",
                11,
                "select 1 +* 2",
                &" ".repeat(11),
            ),
            ("first character", "oops", 0, "oops", ""),
            (
                "wide text before",
                "select '東京', 1 +* 2",
                15,
                "select '東京', 1 +* 2",
                &" ".repeat(17),
            ),
            (
                "emoji before",
                "select '🚀' +* 2",
                11,
                "select '🚀' +* 2",
                &" ".repeat(12),
            ),
            (
                "combining mark before",
                "select 'e\u{301}' +* 2",
                12,
                "select 'e\u{301}' +* 2",
                &" ".repeat(11),
            ),
            (
                "a tab stays a tab",
                "select\t1 +* 2",
                9,
                "select\t1 +* 2",
                "      \t  ",
            ),
            ("second line", "select 1,\n  2 +* 3", 14, "  2 +* 3", "    "),
            (
                "crlf lines",
                "select 1,\r\n  2 +* 3",
                15,
                "  2 +* 3",
                "    ",
            ),
            ("past the end", "select", 99, "select", "      "),
        ];
        for (label, text, index, line, blanks) in cases {
            let (got_line, got_blanks) = caret_under(text, *index);
            assert_eq!(got_line, *line, "case {label}: line");
            assert_eq!(got_blanks, *blanks, "case {label}: blanks");
        }
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
