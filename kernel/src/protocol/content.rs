//! The content of every message type of protocol 5.5, as serde structs.
//!
//! Parsing is tolerant: optional fields default, unknown fields are ignored here
//! (the raw text in [`super::Message`] keeps them for relays), and a message type
//! this module does not know parses as [`Content::Unknown`] with its raw content.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Message, MimeBundle, ProtocolError};

fn yes() -> bool {
    true
}

/// `execute_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    /// The code to run.
    pub code: String,
    /// Run without side effects on history or the execution count, and publish nothing.
    #[serde(default)]
    pub silent: bool,
    /// Record the cell in history and count it.
    #[serde(default = "yes")]
    pub store_history: bool,
    /// Expressions to evaluate after the code.
    #[serde(default)]
    pub user_expressions: Map<String, Value>,
    /// Whether the frontend can answer `input_request`.
    #[serde(default = "yes")]
    pub allow_stdin: bool,
    /// Abort queued execute requests after an error.
    #[serde(default = "yes")]
    pub stop_on_error: bool,
}

/// `execute_reply`, `status` is `ok`, `error` or `aborted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteReply {
    /// `ok`, `error` or `aborted`.
    pub status: String,
    /// The count of this execution.
    #[serde(default)]
    pub execution_count: Option<u32>,
    /// Payloads (pager, set_next_input…), for `ok`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<Value>,
    /// Results of `user_expressions`, for `ok`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub user_expressions: Map<String, Value>,
    /// Error name, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ename: Option<String>,
    /// Error value, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evalue: Option<String>,
    /// Traceback lines, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<Vec<String>>,
}

/// `inspect_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InspectRequest {
    /// The code.
    pub code: String,
    /// Cursor offset in unicode code points.
    pub cursor_pos: usize,
    /// 0 or 1.
    #[serde(default)]
    pub detail_level: u8,
}

/// `inspect_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InspectReply {
    /// `ok` or `error`.
    pub status: String,
    /// Whether anything was found.
    pub found: bool,
    /// The help, as a MIME bundle.
    #[serde(default)]
    pub data: MimeBundle,
    /// Metadata of the bundle.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// `complete_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompleteRequest {
    /// The code.
    pub code: String,
    /// Cursor offset in unicode code points.
    pub cursor_pos: usize,
}

/// `complete_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompleteReply {
    /// `ok` or `error`.
    pub status: String,
    /// The candidates.
    pub matches: Vec<String>,
    /// Start of the replaced range, in code points.
    pub cursor_start: usize,
    /// End of the replaced range, in code points.
    pub cursor_end: usize,
    /// Extra information (e.g. `_jupyter_types_experimental`).
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// `history_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// Include outputs.
    #[serde(default)]
    pub output: bool,
    /// Raw input rather than transformed.
    #[serde(default)]
    pub raw: bool,
    /// `range`, `tail` or `search`.
    pub hist_access_type: String,
    /// For `range`.
    #[serde(default)]
    pub session: Option<i64>,
    /// For `range`.
    #[serde(default)]
    pub start: Option<i64>,
    /// For `range`.
    #[serde(default)]
    pub stop: Option<i64>,
    /// For `tail` and `search`.
    #[serde(default)]
    pub n: Option<i64>,
    /// For `search`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For `search`.
    #[serde(default)]
    pub unique: bool,
}

/// `history_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryReply {
    /// `ok` or `error`.
    pub status: String,
    /// `[session, line, input]` or `[session, line, [input, output]]` triples.
    #[serde(default)]
    pub history: Vec<Value>,
}

/// `is_complete_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IsCompleteRequest {
    /// The code.
    pub code: String,
}

/// `is_complete_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IsCompleteReply {
    /// `complete`, `incomplete`, `invalid` or `unknown`.
    pub status: String,
    /// Indentation for the next line, when incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indent: Option<String>,
}

/// `kernel_info_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelInfoReply {
    /// `ok`.
    #[serde(default = "ok")]
    pub status: String,
    /// The protocol version the kernel speaks.
    pub protocol_version: String,
    /// The kernel implementation name.
    #[serde(default)]
    pub implementation: String,
    /// The implementation version.
    #[serde(default)]
    pub implementation_version: String,
    /// The language the kernel runs.
    pub language_info: LanguageInfo,
    /// A banner for consoles.
    #[serde(default)]
    pub banner: String,
    /// Help links shown in the frontend's help menu.
    #[serde(default)]
    pub help_links: Vec<HelpLink>,
    /// Whether the kernel supports debugging.
    #[serde(default)]
    pub debugger: bool,
    /// Optional features (5.5), e.g. `kernel subshells`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_features: Option<Vec<String>>,
}

fn ok() -> String {
    "ok".to_owned()
}

/// `language_info` of `kernel_info_reply`. Unknown fields are kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LanguageInfo {
    /// Language name, e.g. `python`.
    pub name: String,
    /// Language version.
    #[serde(default)]
    pub version: String,
    /// MIME type of source files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Extension of source files, with the dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_extension: Option<String>,
    /// Pygments lexer name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pygments_lexer: Option<String>,
    /// CodeMirror mode: a name or an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codemirror_mode: Option<Value>,
    /// nbconvert exporter name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbconvert_exporter: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A help link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelpLink {
    /// Link text.
    pub text: String,
    /// Target URL.
    pub url: String,
}

/// `comm_info_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommInfoRequest {
    /// Only comms of this target, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
}

/// `comm_info_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommInfoReply {
    /// `ok`.
    pub status: String,
    /// comm_id to `{target_name}`.
    #[serde(default)]
    pub comms: Map<String, Value>,
}

/// `comm_open`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommOpen {
    /// The comm.
    pub comm_id: String,
    /// Its target.
    pub target_name: String,
    /// Opening data.
    #[serde(default)]
    pub data: Map<String, Value>,
    /// Optional module of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_module: Option<String>,
}

/// `comm_msg` and `comm_close`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommMsg {
    /// The comm.
    pub comm_id: String,
    /// Data.
    #[serde(default)]
    pub data: Map<String, Value>,
}

/// `shutdown_request` and `shutdown_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {
    /// Whether a restart follows.
    #[serde(default)]
    pub restart: bool,
    /// `ok` in replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `interrupt_reply` and other replies carrying only a status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    /// `ok` or `error`.
    pub status: String,
}

/// `input_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputRequest {
    /// The prompt.
    #[serde(default)]
    pub prompt: String,
    /// Hide what is typed.
    #[serde(default)]
    pub password: bool,
}

/// `input_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputReply {
    /// What the user typed.
    #[serde(default)]
    pub value: String,
}

/// `stream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    /// `stdout` or `stderr`.
    pub name: String,
    /// The text.
    pub text: String,
}

/// `display_data` and `update_display_data`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisplayData {
    /// The MIME bundle.
    pub data: MimeBundle,
    /// Per-MIME metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// `{display_id}` and other transient keys.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub transient: Map<String, Value>,
}

/// `execute_input`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteInput {
    /// The code being run.
    pub code: String,
    /// Its count.
    pub execution_count: u32,
}

/// `execute_result`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteResult {
    /// The count shown as `Out[n]`.
    pub execution_count: u32,
    /// The MIME bundle.
    pub data: MimeBundle,
    /// Per-MIME metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Transient keys.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub transient: Map<String, Value>,
}

/// `error` on IOPub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorContent {
    /// Exception name.
    pub ename: String,
    /// Exception value.
    pub evalue: String,
    /// Traceback lines.
    #[serde(default)]
    pub traceback: Vec<String>,
}

/// `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `starting`, `busy` or `idle`.
    pub execution_state: String,
}

/// `clear_output`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClearOutput {
    /// Wait for the next output before clearing.
    #[serde(default)]
    pub wait: bool,
}

/// `iopub_welcome` (5.5): sent on every new IOPub subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IopubWelcome {
    /// The topic subscribed to; empty for everything.
    #[serde(default)]
    pub subscription: String,
}

/// Every message type, parsed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Content {
    /// `execute_request`
    ExecuteRequest(ExecuteRequest),
    /// `execute_reply`
    ExecuteReply(ExecuteReply),
    /// `inspect_request`
    InspectRequest(InspectRequest),
    /// `inspect_reply`
    InspectReply(InspectReply),
    /// `complete_request`
    CompleteRequest(CompleteRequest),
    /// `complete_reply`
    CompleteReply(CompleteReply),
    /// `history_request`
    HistoryRequest(HistoryRequest),
    /// `history_reply`
    HistoryReply(HistoryReply),
    /// `is_complete_request`
    IsCompleteRequest(IsCompleteRequest),
    /// `is_complete_reply`
    IsCompleteReply(IsCompleteReply),
    /// `kernel_info_request`
    KernelInfoRequest,
    /// `kernel_info_reply`
    KernelInfoReply(Box<KernelInfoReply>),
    /// `comm_info_request`
    CommInfoRequest(CommInfoRequest),
    /// `comm_info_reply`
    CommInfoReply(CommInfoReply),
    /// `comm_open`
    CommOpen(CommOpen),
    /// `comm_msg`
    CommMsg(CommMsg),
    /// `comm_close`
    CommClose(CommMsg),
    /// `shutdown_request`
    ShutdownRequest(Shutdown),
    /// `shutdown_reply`
    ShutdownReply(Shutdown),
    /// `interrupt_request`
    InterruptRequest,
    /// `interrupt_reply`
    InterruptReply(StatusReply),
    /// `input_request`
    InputRequest(InputRequest),
    /// `input_reply`
    InputReply(InputReply),
    /// `stream`
    Stream(Stream),
    /// `display_data`
    DisplayData(DisplayData),
    /// `update_display_data`
    UpdateDisplayData(DisplayData),
    /// `execute_input`
    ExecuteInput(ExecuteInput),
    /// `execute_result`
    ExecuteResult(ExecuteResult),
    /// `error`
    Error(ErrorContent),
    /// `status`
    Status(Status),
    /// `clear_output`
    ClearOutput(ClearOutput),
    /// `iopub_welcome`
    IopubWelcome(IopubWelcome),
    /// `debug_request`, `debug_reply`, `debug_event`: passed through as JSON.
    Debug {
        /// Which of the three.
        msg_type: String,
        /// The DAP payload.
        content: Value,
    },
    /// A message type this crate does not know, with its content.
    Unknown {
        /// Its type.
        msg_type: String,
        /// Its content.
        content: Value,
    },
}

impl Content {
    /// Parse a message's content according to its type.
    pub fn parse(msg: &Message) -> Result<Content, ProtocolError> {
        use Content as C;
        let t = msg.msg_type();
        Ok(match t {
            "execute_request" => C::ExecuteRequest(msg.parse_content()?),
            "execute_reply" => C::ExecuteReply(msg.parse_content()?),
            "inspect_request" => C::InspectRequest(msg.parse_content()?),
            "inspect_reply" => C::InspectReply(msg.parse_content()?),
            "complete_request" => C::CompleteRequest(msg.parse_content()?),
            "complete_reply" => C::CompleteReply(msg.parse_content()?),
            "history_request" => C::HistoryRequest(msg.parse_content()?),
            "history_reply" => C::HistoryReply(msg.parse_content()?),
            "is_complete_request" => C::IsCompleteRequest(msg.parse_content()?),
            "is_complete_reply" => C::IsCompleteReply(msg.parse_content()?),
            "kernel_info_request" => C::KernelInfoRequest,
            "kernel_info_reply" => C::KernelInfoReply(Box::new(msg.parse_content()?)),
            "comm_info_request" => C::CommInfoRequest(msg.parse_content()?),
            "comm_info_reply" => C::CommInfoReply(msg.parse_content()?),
            "comm_open" => C::CommOpen(msg.parse_content()?),
            "comm_msg" => C::CommMsg(msg.parse_content()?),
            "comm_close" => C::CommClose(msg.parse_content()?),
            "shutdown_request" => C::ShutdownRequest(msg.parse_content()?),
            "shutdown_reply" => C::ShutdownReply(msg.parse_content()?),
            "interrupt_request" => C::InterruptRequest,
            "interrupt_reply" => C::InterruptReply(msg.parse_content()?),
            "input_request" => C::InputRequest(msg.parse_content()?),
            "input_reply" => C::InputReply(msg.parse_content()?),
            "stream" => C::Stream(msg.parse_content()?),
            "display_data" => C::DisplayData(msg.parse_content()?),
            "update_display_data" => C::UpdateDisplayData(msg.parse_content()?),
            "execute_input" => C::ExecuteInput(msg.parse_content()?),
            "execute_result" => C::ExecuteResult(msg.parse_content()?),
            "error" => C::Error(msg.parse_content()?),
            "status" => C::Status(msg.parse_content()?),
            "clear_output" => C::ClearOutput(msg.parse_content()?),
            "iopub_welcome" => C::IopubWelcome(msg.parse_content()?),
            "debug_request" | "debug_reply" | "debug_event" => C::Debug {
                msg_type: t.to_owned(),
                content: msg.parse_content()?,
            },
            _ => C::Unknown {
                msg_type: t.to_owned(),
                content: msg.parse_content()?,
            },
        })
    }
}

/// The reply type of a request type: `execute_request` → `execute_reply`.
pub fn reply_type(request_type: &str) -> String {
    match request_type.strip_suffix("_request") {
        Some(stem) => format!("{stem}_reply"),
        None => format!("{request_type}_reply"),
    }
}

#[cfg(test)]
mod tests;
