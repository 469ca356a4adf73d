//! The router, the home-kernel proxy and the px and sql families, driven as a
//! frontend drives pxkernel, against fake kernels served by real servers (no
//! Python): the home and the engines are [`FakeKernel`]s, the router runs on a
//! [`KernelThread`] of its own, and a raw [`Frontend`] reads the transcript.

use std::path::PathBuf;

use pxkernel_contract::{Home, MakeFamily};
use pxkernel_kernel::protocol::content::CompleteReply;
use pxkernel_px::PxFamily;
use pxkernel_router::{Config, Router};
use pxkernel_sql::SqlFamily;
use pxkernel_testkit::{AfterRun, FakeKernel, Frontend, KernelThread};
use serde_json::json;

const FAMILIES: &[MakeFamily] = &[PxFamily::boxed, SqlFamily::boxed];

/// pxkernel's router in front of a fake home kernel, and a frontend on it.
struct Pxkernel {
    home: FakeKernel,
    fe: Frontend,
    _router: KernelThread,
    dir: tempfile::TempDir,
}

impl Pxkernel {
    fn start() -> Pxkernel {
        let home = FakeKernel::start();
        let info = home.info().clone();
        let router = KernelThread::spawn(AfterRun::KeepRuntime, move |publisher| async move {
            let config = Config {
                home: "fake".to_owned(),
                home_recorded: None,
                language_info: None,
            };
            Router::with_home(config, Home::attach("fake", info, publisher), FAMILIES)
        });
        let fe = Frontend::connect(router.info());
        Pxkernel {
            home,
            fe,
            _router: router,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Run a cell; its IOPub outputs as (msg_type, content) and its reply.
    fn run(&mut self, code: &str) -> (Vec<(String, serde_json::Value)>, serde_json::Value) {
        let id = self.fe.send_execute(code);
        let mut outputs = Vec::new();
        loop {
            let msg = self.fe.recv_iopub();
            if msg.parent_id() != Some(id.as_str()) {
                continue;
            }
            let content: serde_json::Value = msg.parse_content().expect("content");
            match msg.msg_type() {
                "status" if content["execution_state"] == "idle" => break,
                "status" | "execute_input" => {}
                other => outputs.push((other.to_owned(), content)),
            }
        }
        let reply = self.fe.recv_shell_reply(&id, "execute_reply");
        (outputs, reply.parse_content().expect("reply"))
    }

    /// Fake engines, attached with `%engines connect`.
    fn engines(&mut self, n: usize) -> Vec<FakeKernel> {
        let engines: Vec<FakeKernel> = (0..n).map(|_| FakeKernel::start()).collect();
        let files: Vec<PathBuf> = engines
            .iter()
            .map(|e| e.write_connection_file(self.dir.path()))
            .collect();
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let (_, reply) = self.run(&format!("%engines connect {}", names.join(" ")));
        assert_eq!(reply["status"], "ok", "{reply}");
        engines
    }
}

/// Wait (bounded) until `kernel` has begun to run a cell.
#[track_caller]
fn wait_until_running(kernel: &FakeKernel, who: &str) {
    let deadline = std::time::Instant::now() + pxkernel_testkit::TIMEOUT;
    while kernel.state().executed().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{who} never ran the cell"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn text_of(outputs: &[(String, serde_json::Value)], name: &str) -> String {
    outputs
        .iter()
        .filter(|(t, c)| t == "stream" && c["name"] == name)
        .map(|(_, c)| c["text"].as_str().unwrap_or_default())
        .collect()
}

/// The message of the cell's one error output.
fn evalue_of(outputs: &[(String, serde_json::Value)]) -> String {
    error_of(outputs)["evalue"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn error_of(outputs: &[(String, serde_json::Value)]) -> serde_json::Value {
    let errors: Vec<_> = outputs.iter().filter(|(t, _)| t == "error").collect();
    assert_eq!(errors.len(), 1, "one error output: {outputs:?}");
    errors[0].1.clone()
}

#[test]
fn plain_cells_run_in_the_home_kernel_and_its_output_is_relayed() {
    let mut px = Pxkernel::start();
    let (outputs, reply) = px.run("print:hello from home;result:42");
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(text_of(&outputs, "stdout"), "hello from home");
    let result = outputs
        .iter()
        .find(|(t, _)| t == "execute_result")
        .expect("the home's result");
    assert_eq!(result.1["data"]["text/plain"], "42");
    assert_eq!(
        px.home.state().executed(),
        ["print:hello from home;result:42"]
    );
}

#[test]
fn a_failing_home_cell_is_the_cells_error() {
    let mut px = Pxkernel::start();
    let (outputs, reply) = px.run("error");
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "TestError");
    assert_eq!(error_of(&outputs)["ename"], "TestError");
}

#[test]
fn lsmagic_lists_what_the_families_declare() {
    let mut px = Pxkernel::start();
    let (outputs, reply) = px.run("%lsmagic");
    assert_eq!(reply["status"], "ok");
    let table = outputs
        .iter()
        .find(|(t, _)| t == "execute_result")
        .map(|(_, c)| {
            c["data"]["text/plain"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .expect("the table");
    for forms in ["%lsmagic", "%px, %%px", "%engines", "%sql, %%sql"] {
        assert!(table.contains(forms), "{forms} missing:\n{table}");
    }
    assert!(px.home.state().executed().is_empty(), "nothing went home");
}

#[test]
fn px_fans_out_to_attached_engines_and_tags_their_output() {
    let mut px = Pxkernel::start();
    let engines = px.engines(2);
    let (outputs, reply) = px.run("%px print:on every engine");
    assert_eq!(reply["status"], "ok", "{reply}");
    let mut lines: Vec<&str> = text_of(&outputs, "stdout").leak().lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["[stdout:0] on every engine", "[stdout:1] on every engine"]
    );
    for e in &engines {
        assert_eq!(e.state().executed(), ["print:on every engine"]);
    }
    assert!(px.home.state().executed().is_empty(), "nothing went home");
}

#[test]
fn an_engine_error_fails_the_cell_naming_it_and_keeps_the_others_output() {
    let mut px = Pxkernel::start();
    let _engines = px.engines(2);
    let (outputs, reply) = px.run("%%px --targets 0\nerror");
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "CompositeError");
    let err = error_of(&outputs);
    assert_eq!(
        err["evalue"], "1 of 1 engines failed: [0:execute] TestError: boom",
        "{err}"
    );
    let (outputs, reply) = px.run("%px --targets 1 print:still here");
    assert_eq!(reply["status"], "ok");
    assert_eq!(text_of(&outputs, "stdout"), "[stdout:1] still here\n");
}

#[test]
fn a_dead_engine_fails_fast_and_the_live_one_answers() {
    let mut px = Pxkernel::start();
    let mut engines = px.engines(2);
    engines[1].kill();
    let (outputs, reply) = px.run("%px print:who is there");
    assert_eq!(reply["status"], "error", "{outputs:?}");
    let err = error_of(&outputs);
    assert!(
        err["evalue"].as_str().unwrap_or_default().contains('1'),
        "names engine 1: {err}"
    );
    assert!(
        text_of(&outputs, "stdout").contains("[stdout:0] who is there"),
        "{outputs:?}"
    );
}

#[test]
fn an_interrupt_reaches_the_engines_of_a_running_px_and_not_the_home() {
    let mut px = Pxkernel::start();
    let engines = px.engines(1);
    let id = px.fe.send_execute("%px sleep:60000");
    px.fe.recv_iopub_busy(&id);
    // Once the engine runs the cell, interrupt pxkernel.
    wait_until_running(&engines[0], "the engine");
    let interrupt = px.fe.send_control("interrupt_request", json!({}));
    px.fe.recv_control_reply(&interrupt, "interrupt_reply");
    let reply = px.fe.recv_shell_execute_reply(&id);
    assert_eq!(reply.status, "error");
    assert_eq!(engines[0].state().interrupts(), 1);
    assert_eq!(px.home.state().interrupts(), 0);
}

#[test]
fn an_interrupt_with_no_magic_running_goes_home() {
    let mut px = Pxkernel::start();
    let id = px.fe.send_execute("sleep:60000");
    px.fe.recv_iopub_busy(&id);
    wait_until_running(&px.home, "the home");
    let interrupt = px.fe.send_control("interrupt_request", json!({}));
    px.fe.recv_control_reply(&interrupt, "interrupt_reply");
    let reply = px.fe.recv_shell_execute_reply(&id);
    assert_eq!(reply.status, "error");
    assert_eq!(reply.ename.as_deref(), Some("KeyboardInterrupt"));
    assert_eq!(px.home.state().interrupts(), 1);
}

#[test]
fn sql_runs_in_the_router_and_its_claimed_line_is_routed_to_it() {
    let mut px = Pxkernel::start();
    let (_, reply) = px.run("%sql sqlite://");
    assert_eq!(reply["status"], "ok", "{reply}");
    let (outputs, reply) = px.run("%%sql\nSELECT 6 * 7 AS answer");
    assert_eq!(reply["status"], "ok", "{reply}");
    let table = outputs
        .iter()
        .find(|(t, _)| t == "execute_result")
        .map(|(_, c)| {
            c["data"]["text/plain"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .expect("a table");
    assert!(table.contains("answer") && table.contains("42"), "{table}");
    // `NAME << %sql` is the sql family's line: it needs a Python home to store
    // into, and says so, rather than going home as plain code.
    let (outputs, reply) = px.run("rows << %sql SELECT 1");
    assert_eq!(reply["status"], "error");
    assert!(
        evalue_of(&outputs).contains("Python home kernel"),
        "{outputs:?}"
    );
    assert!(px.home.state().executed().is_empty(), "nothing went home");
}

#[test]
fn usage_errors_are_one_error_output() {
    let mut px = Pxkernel::start();
    let (outputs, reply) = px.run("%engines start -n 0");
    assert_eq!(reply["status"], "error");
    let err = error_of(&outputs);
    assert_eq!(err["ename"], "UsageError");
    assert!(
        err["evalue"].as_str().unwrap_or_default().contains("-n"),
        "{err}"
    );
    let (outputs, _) = px.run("%px print:x");
    assert!(evalue_of(&outputs).contains("no engines"), "{outputs:?}");
}

#[test]
fn magic_names_and_options_complete_from_the_declarations() {
    let mut px = Pxkernel::start();
    for (code, want) in [("%eng", "%engines"), ("%px --ta", "--targets")] {
        let id = px.fe.send_shell(
            "complete_request",
            json!({"code": code, "cursor_pos": code.chars().count()}),
        );
        let reply: CompleteReply = px
            .fe
            .recv_shell_reply(&id, "complete_reply")
            .parse_content()
            .expect("complete_reply");
        assert!(reply.matches.iter().any(|m| m == want), "{code}: {reply:?}");
    }
}

#[test]
fn shutdown_lets_attached_engines_run_and_reaches_the_home() {
    let mut px = Pxkernel::start();
    let engines = px.engines(1);
    let id = px
        .fe
        .send_control("shutdown_request", json!({"restart": false}));
    px.fe.recv_control_reply(&id, "shutdown_reply");
    engines[0].assert_running();
    assert!(
        engines[0].state().shutdowns().is_empty(),
        "an attached engine is let go"
    );
}

#[test]
fn the_homes_input_requests_reach_the_frontend_and_the_answer_goes_back() {
    let mut px = Pxkernel::start();
    let id = px
        .fe
        .send_execute_with("input:Who?", json!({"allow_stdin": true}));
    let (request, content) = px.fe.recv_stdin_input_request(&id);
    assert_eq!(content.prompt, "Who?");
    px.fe.send_input_reply(&request, "Ada");
    let reply = px.fe.recv_shell_execute_reply(&id);
    assert_eq!(reply.status, "ok");
    let outputs = px.fe.recv_iopub_until_idle(&[&id]);
    assert!(
        outputs.iter().any(|(_, what)| what == "stream"),
        "the answer printed by the home: {outputs:?}"
    );
}

#[test]
fn a_px_local_cell_runs_on_the_engines_and_at_home() {
    let mut px = Pxkernel::start();
    let engines = px.engines(1);
    let (outputs, reply) = px.run("%px --local print:everywhere");
    assert_eq!(reply["status"], "ok", "{reply}");
    let out = text_of(&outputs, "stdout");
    assert!(out.contains("[stdout:0] everywhere"), "{out:?}");
    assert_eq!(engines[0].state().executed(), ["print:everywhere"]);
    assert_eq!(px.home.state().executed(), ["print:everywhere"]);
}

#[test]
fn attached_engines_follow_their_origin_when_stopped_or_restarted() {
    let mut px = Pxkernel::start();
    let engines = px.engines(1);
    let (outputs, reply) = px.run("%engines restart 0");
    assert_eq!(reply["status"], "error");
    let err = error_of(&outputs);
    assert!(
        err["evalue"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot restart"),
        "{err}"
    );
    let (_, reply) = px.run("%engines stop 0");
    assert_eq!(reply["status"], "ok", "{reply}");
    engines[0].assert_running();
    assert!(
        engines[0].state().shutdowns().is_empty(),
        "an attached engine is let go, not shut down"
    );
    let (outputs, _) = px.run("%px print:x");
    assert!(evalue_of(&outputs).contains("no engines"), "{outputs:?}");
}
