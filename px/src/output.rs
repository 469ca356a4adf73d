//! What engines print, shaped for the notebook as ipyparallel users know it:
//! `[stdout:0] …` line by line (whole lines only, so engines never interleave
//! inside a line), `[output:2]` before rich displays, `Out[0:5]: …` results,
//! `[3:execute]` errors with the engine's traceback; and grouping by arrival,
//! engine or type for output that is not streamed. Pure functions.

use pxkernel_kernel::protocol::MimeBundle;
use serde_json::{Map, Value, json};

use super::options::Group;

/// A partial line longer than this is shown anyway (a flood without newlines).
pub const MAX_PARTIAL_LINE: usize = 64 * 1024;

/// Holds the unfinished last line of one engine's stream.
#[derive(Debug, Default)]
pub struct LineBuffer {
    partial: String,
}

impl LineBuffer {
    /// Add text; returns the complete lines now ready (each ending in `\n`).
    pub fn push(&mut self, text: &str) -> Option<String> {
        self.partial.push_str(text);
        match self.partial.rfind('\n') {
            Some(i) => {
                let rest = self.partial.split_off(i + 1);
                Some(std::mem::replace(&mut self.partial, rest))
            }
            None if self.partial.len() > MAX_PARTIAL_LINE => {
                let mut line = std::mem::take(&mut self.partial);
                line.push('\n');
                Some(line)
            }
            None => None,
        }
    }

    /// The unfinished line, ended, when the engine is done.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            None
        } else {
            let mut line = std::mem::take(&mut self.partial);
            line.push('\n');
            Some(line)
        }
    }
}

/// One thing an engine produced, in engine terms.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// Complete lines of stdout or stderr.
    Stream {
        /// Engine id.
        engine: u32,
        /// `stdout` or `stderr`.
        name: String,
        /// Whole lines.
        text: String,
    },
    /// A `display_data` (or an update of one).
    Display {
        /// Engine id.
        engine: u32,
        /// Whether it is `update_display_data`.
        update: bool,
        /// Its content (data, metadata, transient).
        content: Map<String, Value>,
    },
    /// An `execute_result`.
    Result {
        /// Engine id.
        engine: u32,
        /// The engine's execution count.
        count: u32,
        /// The MIME bundle.
        data: MimeBundle,
        /// Its metadata.
        metadata: Map<String, Value>,
    },
    /// The engine's error.
    Error {
        /// Engine id.
        engine: u32,
        /// Exception name.
        ename: String,
        /// Exception value.
        evalue: String,
        /// Traceback lines.
        traceback: Vec<String>,
    },
    /// The engine ended without a normal reply (died, timed out, not stopped).
    Failure {
        /// Engine id.
        engine: u32,
        /// What happened, e.g. `died (killed by signal 9)`.
        what: String,
    },
}

impl Piece {
    /// The engine it came from.
    pub fn engine(&self) -> u32 {
        match self {
            Piece::Stream { engine, .. }
            | Piece::Display { engine, .. }
            | Piece::Result { engine, .. }
            | Piece::Error { engine, .. }
            | Piece::Failure { engine, .. } => *engine,
        }
    }

    fn type_rank(&self) -> u8 {
        match self {
            Piece::Stream { name, .. } if name == "stdout" => 0,
            Piece::Stream { .. } => 1,
            Piece::Display { .. } => 2,
            Piece::Result { .. } => 3,
            Piece::Error { .. } | Piece::Failure { .. } => 4,
        }
    }
}

/// Order pieces for display at the end of a run.
pub fn group(mut pieces: Vec<Piece>, mode: Group) -> Vec<Piece> {
    match mode {
        Group::Order => {}
        Group::Engine => pieces.sort_by_key(Piece::engine),
        Group::Type => pieces.sort_by_key(|p| (p.type_rank(), p.engine())),
    }
    pieces
}

/// A message to publish on the frontend's IOPub.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A `stream` message.
    Stream {
        /// `stdout` or `stderr`.
        name: String,
        /// The text.
        text: String,
    },
    /// A `display_data` or `update_display_data` with this content.
    Display {
        /// The message type.
        msg_type: &'static str,
        /// The content.
        content: Value,
    },
}

fn prefixed(tag: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16 * text.matches('\n').count());
    for line in text.split_inclusive('\n') {
        out.push_str(tag);
        out.push(' ');
        out.push_str(line);
    }
    out
}

/// Engines' display ids are made distinct per engine, so an update from one
/// engine never replaces another engine's output.
fn engine_display_id(engine: u32, content: &mut Map<String, Value>) {
    if let Some(Value::Object(t)) = content.get_mut("transient")
        && let Some(Value::String(id)) = t.get_mut("display_id")
    {
        *id = format!("px{engine}-{id}");
    }
}

/// The frontend messages that show one piece.
pub fn render(piece: &Piece) -> Vec<Action> {
    match piece {
        Piece::Stream { engine, name, text } => vec![Action::Stream {
            name: name.clone(),
            text: prefixed(&format!("[{name}:{engine}]"), text),
        }],
        Piece::Display {
            engine,
            update,
            content,
        } => {
            let mut content = content.clone();
            engine_display_id(*engine, &mut content);
            let shown = Action::Display {
                msg_type: if *update {
                    "update_display_data"
                } else {
                    "display_data"
                },
                content: Value::Object(content),
            };
            if *update {
                vec![shown]
            } else {
                vec![
                    Action::Stream {
                        name: "stdout".to_owned(),
                        text: format!("[output:{engine}]\n"),
                    },
                    shown,
                ]
            }
        }
        Piece::Result {
            engine,
            count,
            data,
            metadata,
        } => {
            let label = format!("Out[{engine}:{count}]:");
            let plain_only = data.keys().all(|k| k == "text/plain");
            match data.get("text/plain").and_then(Value::as_str) {
                Some(text) if plain_only => {
                    let sep = if text.contains('\n') { "\n" } else { " " };
                    let mut d = data.clone();
                    d.insert(
                        "text/plain".to_owned(),
                        Value::String(format!("{label}{sep}{text}")),
                    );
                    vec![Action::Display {
                        msg_type: "display_data",
                        content: json!({"data": d, "metadata": metadata}),
                    }]
                }
                _ => vec![
                    Action::Stream {
                        name: "stdout".to_owned(),
                        text: format!("{label}\n"),
                    },
                    Action::Display {
                        msg_type: "display_data",
                        content: json!({"data": data, "metadata": metadata}),
                    },
                ],
            }
        }
        Piece::Error {
            engine,
            ename,
            evalue,
            traceback,
        } => {
            let body = if traceback.is_empty() && ename.is_empty() {
                evalue.clone()
            } else if traceback.is_empty() {
                format!("{ename}: {evalue}")
            } else {
                traceback.join("\n")
            };
            vec![Action::Stream {
                name: "stderr".to_owned(),
                text: format!("[{engine}:execute]\n{}\n", body.trim_end_matches('\n')),
            }]
        }
        Piece::Failure { engine, what } => vec![Action::Stream {
            name: "stderr".to_owned(),
            text: format!("[{engine}:execute] engine {engine} {what}\n"),
        }],
    }
}

/// Merge consecutive stream actions of the same name into one message.
pub fn coalesce(actions: Vec<Action>) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::with_capacity(actions.len());
    for a in actions {
        if let (
            Some(Action::Stream {
                name: last,
                text: acc,
            }),
            Action::Stream { name, text },
        ) = (out.last_mut(), &a)
            && last == name
        {
            acc.push_str(text);
            continue;
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_releases_whole_lines_only() {
        let mut b = LineBuffer::default();
        assert_eq!(b.push("hel"), None);
        assert_eq!(b.push("lo\nwor"), Some("hello\n".to_owned()));
        assert_eq!(b.push("ld\na\nb"), Some("world\na\n".to_owned()));
        assert_eq!(b.finish(), Some("b\n".to_owned()));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn line_buffer_bounds_a_line_without_newline() {
        let mut b = LineBuffer::default();
        let big = "x".repeat(MAX_PARTIAL_LINE + 1);
        let out = b.push(&big).unwrap();
        assert_eq!(out.len(), MAX_PARTIAL_LINE + 2);
        assert!(out.ends_with('\n'));
    }

    fn stream(engine: u32, name: &str, text: &str) -> Piece {
        Piece::Stream {
            engine,
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn renders_as_ipyparallel_users_expect() {
        let cases: Vec<(&str, Piece, Vec<Action>)> = vec![
            (
                "each line of a stream is tagged",
                stream(0, "stdout", "a\nb\n"),
                vec![Action::Stream { name: "stdout".into(), text: "[stdout:0] a\n[stdout:0] b\n".into() }],
            ),
            (
                "stderr",
                stream(1, "stderr", "oops\n"),
                vec![Action::Stream { name: "stderr".into(), text: "[stderr:1] oops\n".into() }],
            ),
            (
                "plain result",
                Piece::Result { engine: 0, count: 5, data: serde_json::from_value(json!({"text/plain": "42"})).unwrap(), metadata: Map::new() },
                vec![Action::Display { msg_type: "display_data", content: json!({"data": {"text/plain": "Out[0:5]: 42"}, "metadata": {}}) }],
            ),
            (
                "multi-line plain result goes under its label",
                Piece::Result { engine: 2, count: 1, data: serde_json::from_value(json!({"text/plain": "a\nb"})).unwrap(), metadata: Map::new() },
                vec![Action::Display { msg_type: "display_data", content: json!({"data": {"text/plain": "Out[2:1]:\na\nb"}, "metadata": {}}) }],
            ),
            (
                "rich result keeps its whole bundle",
                Piece::Result { engine: 1, count: 3, data: serde_json::from_value(json!({"text/plain": "x", "text/html": "<b>x</b>"})).unwrap(), metadata: Map::new() },
                vec![
                    Action::Stream { name: "stdout".into(), text: "Out[1:3]:\n".into() },
                    Action::Display { msg_type: "display_data", content: json!({"data": {"text/plain": "x", "text/html": "<b>x</b>"}, "metadata": {}}) },
                ],
            ),
            (
                "display is labelled and its id made per engine",
                Piece::Display { engine: 2, update: false, content: serde_json::from_value(json!({"data": {"image/png": "AA=="}, "metadata": {}, "transient": {"display_id": "d"}})).unwrap() },
                vec![
                    Action::Stream { name: "stdout".into(), text: "[output:2]\n".into() },
                    Action::Display { msg_type: "display_data", content: json!({"data": {"image/png": "AA=="}, "metadata": {}, "transient": {"display_id": "px2-d"}}) },
                ],
            ),
            (
                "update is not labelled",
                Piece::Display { engine: 2, update: true, content: serde_json::from_value(json!({"data": {}, "metadata": {}, "transient": {"display_id": "d"}})).unwrap() },
                vec![Action::Display { msg_type: "update_display_data", content: json!({"data": {}, "metadata": {}, "transient": {"display_id": "px2-d"}}) }],
            ),
            (
                "error with traceback",
                Piece::Error { engine: 3, ename: "ZeroDivisionError".into(), evalue: "division by zero".into(), traceback: vec!["Traceback".into(), "ZeroDivisionError: division by zero".into()] },
                vec![Action::Stream { name: "stderr".into(), text: "[3:execute]\nTraceback\nZeroDivisionError: division by zero\n".into() }],
            ),
            (
                "error without traceback",
                Piece::Error { engine: 0, ename: "E".into(), evalue: "v".into(), traceback: vec![] },
                vec![Action::Stream { name: "stderr".into(), text: "[0:execute]\nE: v\n".into() }],
            ),
            (
                "failure",
                Piece::Failure { engine: 4, what: "died (killed by signal 9)".into() },
                vec![Action::Stream { name: "stderr".into(), text: "[4:execute] engine 4 died (killed by signal 9)\n".into() }],
            ),
        ];
        for (label, piece, want) in cases {
            assert_eq!(render(&piece), want, "case {label}");
        }
    }

    #[test]
    fn grouping() {
        let pieces = vec![
            stream(1, "stdout", "1a\n"),
            stream(0, "stderr", "0e\n"),
            stream(0, "stdout", "0a\n"),
            Piece::Failure {
                engine: 0,
                what: "x".into(),
            },
            stream(1, "stdout", "1b\n"),
        ];
        let texts = |ps: Vec<Piece>| -> Vec<String> {
            ps.into_iter()
                .map(|p| match p {
                    Piece::Stream { text, .. } => text.trim().to_owned(),
                    _ => "fail".to_owned(),
                })
                .collect()
        };
        assert_eq!(
            texts(group(pieces.clone(), Group::Order)),
            ["1a", "0e", "0a", "fail", "1b"]
        );
        assert_eq!(
            texts(group(pieces.clone(), Group::Engine)),
            ["0e", "0a", "fail", "1a", "1b"]
        );
        assert_eq!(
            texts(group(pieces, Group::Type)),
            ["0a", "1a", "1b", "0e", "fail"]
        );
    }

    #[test]
    fn coalesces_neighbouring_streams() {
        let a = |n: &str, t: &str| Action::Stream {
            name: n.into(),
            text: t.into(),
        };
        let d = Action::Display {
            msg_type: "display_data",
            content: json!({}),
        };
        assert_eq!(
            coalesce(vec![
                a("stdout", "1"),
                a("stdout", "2"),
                a("stderr", "3"),
                d.clone(),
                a("stdout", "4")
            ]),
            vec![a("stdout", "12"), a("stderr", "3"), d, a("stdout", "4")]
        );
    }
}
