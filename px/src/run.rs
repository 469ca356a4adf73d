//! One `%px` run: send the cell to every target engine at once, shape what comes
//! back as it arrives, and end when every engine has replied and gone idle — or
//! died, timed out, or ignored an interrupt past its grace period. Never hangs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use pxkernel_kernel::protocol::content::{
    DisplayData, ErrorContent, ExecuteReply, ExecuteResult, Stream,
};
use pxkernel_kernel::protocol::{Channel, Message, new_uuid};
use pxkernel_kernel::server::Request;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::time::sleep_until;

use super::engines::{Engine, id_ranges};
use super::options::{Group, PxOptions};
use super::output::{Action, LineBuffer, Piece, coalesce, group, render};
use pxkernel_contract::display::escape_html;
use pxkernel_contract::link::{LinkEvent, RouteGuard};

/// How long engines get to stop after an interrupt before the cell ends without them.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// Stream output relayed per engine per run; the rest is counted, not shown.
pub const OUTPUT_LIMIT: usize = 16 << 20;
/// The progress display is refreshed at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Lets the kernel interrupt a run from the control channel.
#[derive(Default)]
pub struct RunControl {
    interrupt: Notify,
    interrupted: Cell<bool>,
}

impl RunControl {
    /// Ask the run to interrupt its engines.
    pub fn interrupt(&self) {
        self.interrupted.set(true);
        self.interrupt.notify_one();
    }
}

/// How one engine's part ended.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// It ran.
    Ok,
    /// It raised.
    Error {
        /// Exception name.
        ename: String,
        /// Exception value.
        evalue: String,
    },
    /// It did not run (its queue was aborted).
    Aborted,
    /// The engine died (or was dead already).
    Died(String),
    /// Its reply was lost with a dropped connection (the engine lives on).
    Lost(String),
    /// Still running when `--timeout` expired.
    TimedOut(Duration),
    /// Still running after an interrupt and its grace period.
    NotStopped,
}

impl End {
    fn failed(&self) -> bool {
        !matches!(self, End::Ok)
    }

    /// How a failure reads after the engine's id.
    pub fn describe(&self) -> String {
        match self {
            End::Ok => "ok".to_owned(),
            End::Error { ename, evalue } if ename.is_empty() => evalue.clone(),
            End::Error { ename, evalue } => format!("{ename}: {evalue}"),
            End::Aborted => "aborted".to_owned(),
            End::Died(reason) => format!("died ({reason})"),
            End::Lost(reason) => format!("its reply was lost: {reason}"),
            End::TimedOut(t) => format!("timed out after {} s", t.as_secs_f64()),
            End::NotStopped => format!(
                "did not stop within {} s of the interrupt; it is still running",
                INTERRUPT_GRACE.as_secs()
            ),
        }
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// How each engine ended, by engine id.
    pub ends: Vec<(u32, End)>,
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// Output not shown yet (not streamed, or the run was not blocking).
    pub pieces: Vec<Piece>,
    /// How to order `pieces`.
    pub group: Group,
}

impl RunResult {
    /// The engines that did not end well.
    pub fn failures(&self) -> Vec<&(u32, End)> {
        self.ends.iter().filter(|(_, e)| e.failed()).collect()
    }
}

/// Publish pieces on a request, rendered and coalesced.
pub fn publish(req: &Request, pieces: Vec<Piece>) {
    let actions: Vec<Action> = pieces.iter().flat_map(render).collect();
    for a in coalesce(actions) {
        match a {
            Action::Stream { name, text } => req.stream(&name, &text),
            Action::Display { msg_type, content } => req.publish(msg_type, &content),
        }
    }
}

struct Slot {
    engine: Rc<Engine>,
    _route: Option<RouteGuard>,
    reply: Option<ExecuteReply>,
    idle: bool,
    end: Option<End>,
    stdout: LineBuffer,
    stderr: LineBuffer,
    shown_bytes: usize,
    hidden_bytes: usize,
}

/// Where pieces go: published as they come (streaming, blocking) or kept.
struct Sink<'r> {
    live: Option<&'r Request>,
    kept: Vec<Piece>,
}

impl Sink<'_> {
    fn emit(&mut self, piece: Piece) {
        match self.live {
            Some(req) => publish(req, vec![piece]),
            None => self.kept.push(piece),
        }
    }
}

struct Progress {
    display_id: String,
    shown: bool,
    last: Instant,
}

/// Run `code` on `engines`. With `req`, output streams to it (when `opts.stream`)
/// and a progress display appears after `opts.progress_after`; without, all output
/// is kept in the result (non-blocking runs).
pub async fn run(
    req: Option<&Request>,
    engines: Vec<Rc<Engine>>,
    code: &str,
    opts: &PxOptions,
    control: &RunControl,
) -> RunResult {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, LinkEvent)>();
    let mut slots: Vec<Slot> = Vec::with_capacity(engines.len());
    for (i, engine) in engines.into_iter().enumerate() {
        let tx = tx.clone();
        let msg = engine.link.message(
            "execute_request",
            &json!({"code": code, "silent": false, "store_history": true,
                    "user_expressions": {}, "allow_stdin": false, "stop_on_error": false}),
        );
        let listener: pxkernel_contract::link::Listener = Rc::new(move |ev| {
            let _ = tx.send((i, ev));
        });
        let (route, end) = match engine.link.request(Channel::Shell, msg, listener) {
            Ok(g) => (Some(g), None),
            Err(reason) => (None, Some(End::Died(reason))),
        };
        slots.push(Slot {
            engine,
            _route: route,
            reply: None,
            idle: false,
            end,
            stdout: LineBuffer::default(),
            stderr: LineBuffer::default(),
            shown_bytes: 0,
            hidden_bytes: 0,
        });
    }
    drop(tx);
    let mut sink = Sink {
        live: req.filter(|_| opts.stream),
        kept: Vec::new(),
    };
    for slot in slots.iter_mut().filter(|s| s.end.is_some()) {
        finish_slot(slot, &mut sink);
    }
    let mut progress = req.map(|_| Progress {
        display_id: format!("px-progress-{}", new_uuid()),
        shown: false,
        last: started,
    });
    let progress_at = tokio::time::Instant::from_std(started + opts.progress_after);
    let deadline = opts
        .timeout
        .map(|t| tokio::time::Instant::from_std(started + t));
    let mut grace: Option<tokio::time::Instant> = None;
    let mut next_tick = progress_at;

    while slots.iter().any(|s| s.end.is_none()) {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some((i, ev)) => on_event(&mut slots[i], ev, &mut sink),
                None => break,
            },
            () = sleep_until(deadline.unwrap_or(progress_at)), if deadline.is_some() => {
                let t = opts.timeout.unwrap_or_default();
                for s in slots.iter_mut().filter(|s| s.end.is_none()) {
                    s.end = Some(End::TimedOut(t));
                    finish_slot(s, &mut sink);
                }
            }
            () = control.interrupt.notified(), if grace.is_none() => {
                for s in slots.iter().filter(|s| s.end.is_none()) {
                    s.engine.link.interrupt();
                }
                grace = Some(tokio::time::Instant::now() + INTERRUPT_GRACE);
            }
            () = sleep_until(grace.unwrap_or(progress_at)), if grace.is_some() => {
                for s in slots.iter_mut().filter(|s| s.end.is_none()) {
                    s.end = Some(End::NotStopped);
                    finish_slot(s, &mut sink);
                }
            }
            () = sleep_until(next_tick), if progress.is_some() => {
                next_tick = tokio::time::Instant::now() + PROGRESS_EVERY;
                if let (Some(p), Some(req)) = (progress.as_mut(), req) {
                    show_progress(req, p, &slots, started, false);
                }
            }
        }
        if let (Some(p), Some(req)) = (progress.as_mut(), req)
            && p.shown
            && p.last.elapsed() >= Duration::from_millis(200)
        {
            show_progress(req, p, &slots, started, false);
        }
    }
    if let (Some(p), Some(req)) = (progress.as_mut(), req)
        && p.shown
    {
        show_progress(req, p, &slots, started, true);
    }
    let moved: usize = slots.iter().map(|s| s.shown_bytes + s.hidden_bytes).sum();
    if moved > (8 << 20) {
        // A flood leaves freed arenas behind: give them back to the system.
        // SAFETY: malloc_trim only releases free memory of the C allocator.
        unsafe {
            libc::malloc_trim(0);
        }
    }
    let ends: Vec<(u32, End)> = slots
        .iter()
        .map(|s| (s.engine.id, s.end.clone().unwrap_or(End::Aborted)))
        .collect();
    RunResult {
        ends,
        interrupted: control.interrupted.get(),
        pieces: sink.kept,
        group: opts.group,
    }
}

fn on_event(slot: &mut Slot, ev: LinkEvent, sink: &mut Sink<'_>) {
    if slot.end.is_some() {
        return;
    }
    let id = slot.engine.id;
    match ev {
        LinkEvent::Died(reason) => {
            slot.end = Some(End::Died(reason));
            finish_slot(slot, sink);
        }
        LinkEvent::Lost(reason) => {
            slot.end = Some(End::Lost(reason));
            finish_slot(slot, sink);
        }
        LinkEvent::Message(Channel::Iopub, msg) => on_output(slot, id, msg, sink),
        LinkEvent::Message(Channel::Shell, msg) => {
            if let Ok(r) = msg.parse_content::<ExecuteReply>() {
                slot.reply = Some(r);
                check_done(slot, sink);
            }
        }
        LinkEvent::Message(..) => {}
    }
}

fn on_output(slot: &mut Slot, id: u32, msg: Message, sink: &mut Sink<'_>) {
    match msg.msg_type() {
        "status" if msg.content.get().contains("\"idle\"") => {
            slot.idle = true;
            check_done(slot, sink);
        }
        "stream" => {
            if slot.shown_bytes >= OUTPUT_LIMIT {
                // Over the limit: count what is not shown without parsing it.
                slot.hidden_bytes += msg.content.get().len();
                return;
            }
            let Ok(mut s) = msg.parse_content::<Stream>() else {
                return;
            };
            let room = OUTPUT_LIMIT - slot.shown_bytes;
            if s.text.len() > room {
                let mut cut = room;
                while !s.text.is_char_boundary(cut) {
                    cut -= 1;
                }
                slot.hidden_bytes += s.text.len() - cut;
                s.text.truncate(cut);
                s.text.shrink_to_fit();
            }
            slot.shown_bytes += s.text.len();
            let buf = if s.name == "stderr" {
                &mut slot.stderr
            } else {
                &mut slot.stdout
            };
            if let Some(text) = buf.push(&s.text) {
                sink.emit(Piece::Stream {
                    engine: id,
                    name: s.name,
                    text,
                });
            }
        }
        t @ ("display_data" | "update_display_data") => {
            if let Ok(Value::Object(content)) = serde_json::from_str::<Value>(msg.content.get())
                && serde_json::from_value::<DisplayData>(Value::Object(content.clone())).is_ok()
            {
                flush_lines(slot, sink);
                sink.emit(Piece::Display {
                    engine: id,
                    update: t == "update_display_data",
                    content,
                });
            }
        }
        "execute_result" => {
            if let Ok(r) = msg.parse_content::<ExecuteResult>() {
                flush_lines(slot, sink);
                sink.emit(Piece::Result {
                    engine: id,
                    count: r.execution_count,
                    data: r.data,
                    metadata: r.metadata,
                });
            }
        }
        "error" => {
            if let Ok(e) = msg.parse_content::<ErrorContent>() {
                flush_lines(slot, sink);
                sink.emit(Piece::Error {
                    engine: id,
                    ename: e.ename,
                    evalue: e.evalue,
                    traceback: e.traceback,
                });
            }
        }
        // execute_input, busy, comms and clear_output (which would wipe every
        // engine's output in the cell) are not shown.
        _ => {}
    }
}

fn flush_lines(slot: &mut Slot, sink: &mut Sink<'_>) {
    let id = slot.engine.id;
    for (name, buf) in [("stdout", &mut slot.stdout), ("stderr", &mut slot.stderr)] {
        if let Some(text) = buf.finish() {
            sink.emit(Piece::Stream {
                engine: id,
                name: name.to_owned(),
                text,
            });
        }
    }
}

fn check_done(slot: &mut Slot, sink: &mut Sink<'_>) {
    if !(slot.idle && slot.reply.is_some()) {
        return;
    }
    let reply = slot.reply.take().expect("checked");
    slot.end = Some(match reply.status.as_str() {
        "ok" => End::Ok,
        "aborted" => End::Aborted,
        _ => End::Error {
            ename: reply.ename.unwrap_or_default(),
            evalue: reply.evalue.unwrap_or_default(),
        },
    });
    finish_slot(slot, sink);
}

/// The engine is done: show its unfinished lines, what was cut, and how it failed.
fn finish_slot(slot: &mut Slot, sink: &mut Sink<'_>) {
    flush_lines(slot, sink);
    let id = slot.engine.id;
    if slot.hidden_bytes > 0 {
        sink.emit(Piece::Stream {
            engine: id,
            name: "stderr".to_owned(),
            text: format!(
                "… {:.1} MB more output not shown (at most {} MB per engine per cell)\n",
                slot.hidden_bytes as f64 / 1e6,
                OUTPUT_LIMIT >> 20
            ),
        });
    }
    match &slot.end {
        Some(End::Ok) | Some(End::Error { .. }) | None => {}
        Some(other) => sink.emit(Piece::Failure {
            engine: id,
            what: other.describe(),
        }),
    }
}

fn show_progress(req: &Request, p: &mut Progress, slots: &[Slot], started: Instant, last: bool) {
    let total = slots.len();
    let done = slots.iter().filter(|s| s.end.is_some()).count();
    let failed = slots
        .iter()
        .filter(|s| s.end.as_ref().is_some_and(End::failed))
        .count();
    let running: Vec<u32> = slots
        .iter()
        .filter(|s| s.end.is_none())
        .map(|s| s.engine.id)
        .collect();
    let secs = started.elapsed().as_secs_f64();
    let mut text = format!("%px: {done}/{total} engines done");
    if failed > 0 {
        text.push_str(&format!(", {failed} failed"));
    }
    text.push_str(&format!(" ({secs:.1} s)"));
    if !running.is_empty() {
        text.push_str(&format!("; running: {}", id_ranges(&running)));
    }
    let badges: String = slots
        .iter()
        .map(|s| {
            let (word, color) = match &s.end {
                None => ("busy", "#1f77b4"),
                Some(End::Ok) => ("done", "#2ca02c"),
                Some(_) => ("failed", "#d62728"),
            };
            format!(
                "<span title=\"engine {id}: {word}\" style=\"display:inline-block;margin:1px;\
                 padding:0 4px;border-radius:3px;color:white;background:{color}\">{id}</span>",
                id = s.engine.id
            )
        })
        .collect();
    let html = format!(
        "<div><progress value=\"{done}\" max=\"{total}\" style=\"width:12em\"></progress> \
         {}<div>{badges}</div></div>",
        escape_html(&text)
    );
    let content = json!({
        "data": {"text/plain": text, "text/html": html},
        "metadata": {},
        "transient": {"display_id": p.display_id},
    });
    if p.shown {
        req.publish("update_display_data", &content);
    } else if !last {
        req.publish("display_data", &content);
        p.shown = true;
    }
    p.last = Instant::now();
}

/// The failures of a run as one line and one traceback line per engine.
pub fn failure_report(result: &RunResult) -> Option<(String, Vec<String>)> {
    let failures = result.failures();
    if failures.is_empty() {
        return None;
    }
    let lines: Vec<String> = failures
        .iter()
        .map(|(id, end)| format!("[{id}:execute] {}", end.describe()))
        .collect();
    let summary = format!(
        "{} of {} engines failed: {}",
        failures.len(),
        result.ends.len(),
        lines.join("; ")
    );
    Some((summary, lines))
}

/// Pieces kept by a non-streamed or non-blocking run, in the order asked for.
pub fn ordered(result: &RunResult) -> Vec<Piece> {
    group(result.pieces.clone(), result.group)
}

/// A run started with `--noblock`, for `%pxresult`.
pub struct Pending {
    /// What it runs on.
    pub targets: Vec<u32>,
    /// Lets `%pxresult` interrupt it.
    pub control: Rc<RunControl>,
    done: Notify,
    result: RefCell<Option<RunResult>>,
}

impl Pending {
    /// A pending run on these engines.
    pub fn new(targets: Vec<u32>) -> Rc<Pending> {
        Rc::new(Pending {
            targets,
            control: Rc::new(RunControl::default()),
            done: Notify::new(),
            result: RefCell::new(None),
        })
    }

    /// Record the result and wake waiters.
    pub fn complete(&self, result: RunResult) {
        *self.result.borrow_mut() = Some(result);
        self.done.notify_waiters();
    }

    /// Wait for the result.
    pub async fn wait(&self) -> RunResult {
        loop {
            let notified = self.done.notified();
            if let Some(r) = self.result.borrow().clone() {
                return r;
            }
            notified.await;
        }
    }
}
