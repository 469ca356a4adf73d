"""pxkernel in a real JupyterLab driven by headless Chromium: Lab started by absolute
path from a venv that is not on PATH, a notebook on pxkernel opened in the browser,
its cells run one by one as a user runs them (plain code, an HTML display, %lsmagic,
engines, %px with and without a progress display, %sql, an ipywidgets slider moved
with the keyboard, an error), and what the page then shows. Screenshots go to
build/lab/ (one of the whole notebook at the end, one for each failed test)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab_support import (
    CHROMIUM,
    KEYS,
    VENV,
    assert_no_leftovers,
    free_port,
    stop,
    venv_tool,
    write_notebook,
)

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is missing: `make setup` installs requirements-dev.txt"
)
expect = playwright_sync.expect
expect.set_options(timeout=15_000)  # ms: what the page shows may lag a busy machine

CELL_TIMEOUT = 60_000  # ms: a cell that starts engines may take a while on a busy machine
START_TIMEOUT = 90.0  # s: a first Lab start builds its caches
NOTEBOOK = "pxkernel-lab.ipynb"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Lab settings for a quiet, fully rendered page: every cell in the DOM, no news toast.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


class Lab:
    """A running JupyterLab server: its process, URL, token, log and the kernelspec it is tested with."""

    def __init__(self, proc, base, token, log, kernel_name, display_name):
        self.proc, self.base, self.token, self.log = proc, base, token, log
        self.kernel_name, self.display_name = kernel_name, display_name

    def api(self, path: str):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"token {self.token}"})
        with DIRECT.open(req, timeout=5) as r:
            return json.loads(r.read())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


@pytest.fixture(scope="module")
def lab(outside, pxkernel_spec, tmp_path_factory):
    """`<venv>/bin/jupyter-lab` started with the venv off PATH, on a free port, with
    its own dirs and a notebook on the installed pxkernel; stopped at the end, and
    every process it started must be gone."""
    jupyter_lab = venv_tool("jupyter-lab")
    env, marker = outside("lab")
    settings = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings"
    for rel, values in LAB_SETTINGS.items():
        f = settings / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    root = tmp_path_factory.mktemp("lab-root")
    spec = json.loads((VENV / "share" / "jupyter" / "kernels" / pxkernel_spec / "kernel.json").read_text())
    write_notebook(root / NOTEBOOK, pxkernel_spec, spec["display_name"])
    token = secrets.token_hex(16)
    port = free_port()
    log = root.parent / f"{root.name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(jupyter_lab),
                "--no-browser",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.token={token}",
                f"--ServerApp.root_dir={root}",
                "--allow-root",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Lab(proc, f"http://127.0.0.1:{port}", token, log, pxkernel_spec, spec["display_name"])
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter-lab exited with {proc.returncode}:\n{server.log_text()}")
            try:
                server.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter-lab did not answer within {START_TIMEOUT:.0f} s:\n{server.log_text()}")
                time.sleep(0.2)
        yield server
    finally:
        stop(proc)
        assert_no_leftovers(marker)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (`make setup` does, as root)")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def websockets():
    """Every websocket the page opens (the kernel's carries widget updates and cells)."""
    return []


@pytest.fixture(scope="module")
def page(browser, lab, screenshots, websockets):
    context = browser.new_context(viewport={"width": 1280, "height": 1800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("websocket", lambda ws: websockets.append(ws))
    page.goto(f"{lab.base}/lab/tree/{NOTEBOOK}?token={lab.token}")
    try:
        yield page
        page.screenshot(path=str(screenshots / "jupyterlab.png"), full_page=True)
    finally:
        context.close()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, screenshots):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "page" in request.fixturenames:
        request.getfixturevalue("page").screenshot(path=str(screenshots / f"{request.node.name}-failed.png"))


class Notebook:
    """The open notebook in the page; cells are found by their key in lab_support.CELLS."""

    def __init__(self, page, websockets):
        self.page, self.websockets = page, websockets
        self.panel = page.locator(".jp-NotebookPanel").filter(has=page.locator(".jp-Notebook")).first

    def cell(self, key: str):
        return self.panel.locator(".jp-Notebook .jp-Cell").nth(KEYS.index(key))

    def run(self, key: str, timeout: int = CELL_TIMEOUT):
        """Select the cell, press Ctrl+Enter (run, stay), wait for its execution count."""
        cell = self.cell(key)
        prompt = cell.locator(".jp-InputArea-prompt")
        expect(prompt).to_have_text(re.compile(r"^\[\s*\]:$"))
        prompt.click()
        self.page.keyboard.press("Control+Enter")
        expect(prompt).to_have_text(re.compile(r"^\[\d+\]:$"), timeout=timeout)
        return cell

    def outputs(self, cell):
        return cell.locator(".jp-OutputArea-output")

    def kernel_socket(self):
        open_ = [ws for ws in self.websockets if "/api/kernels/" in ws.url and not ws.is_closed()]
        assert open_, [ws.url for ws in self.websockets]
        return open_[-1]


@pytest.fixture(scope="module")
def notebook(page, lab, websockets):
    nb = Notebook(page, websockets)
    expect(nb.cell(KEYS[-1])).to_be_visible(timeout=60_000)
    # The session Lab started runs the installed pxkernel and becomes idle.
    deadline = time.monotonic() + 60
    while True:
        sessions = [s for s in lab.api("/api/sessions") if s["path"].endswith(NOTEBOOK)]
        if sessions and sessions[0]["kernel"]["execution_state"] == "idle":
            break
        assert time.monotonic() < deadline, f"no idle kernel for the notebook: {sessions}\n{lab.log_text()}"
        time.sleep(0.2)
    assert sessions[0]["kernel"]["name"] == lab.kernel_name
    return nb


def widget_update(**state):
    """Matches a sent websocket frame carrying a widget state update with `state`."""
    wanted = [json.dumps({k: v}, separators=(",", ":"))[1:-1].encode() for k, v in state.items()]

    def matches(payload) -> bool:
        data = payload if isinstance(payload, bytes) else payload.encode()
        return b'"method":"update"' in data and all(w in data for w in wanted)

    return matches


def test_lab_lists_the_pxkernel_installed_from_outside_the_venv(lab):
    specs = lab.api("/api/kernelspecs")["kernelspecs"]
    assert lab.kernel_name in specs, sorted(specs)
    spec = specs[lab.kernel_name]["spec"]
    assert spec["argv"][1:] == ["kernel", "-f", "{connection_file}"]
    assert spec["display_name"] == lab.display_name


def test_notebook_opens_on_pxkernel(notebook, lab):
    expect(notebook.panel.locator(".jp-KernelName")).to_have_text(lab.display_name)


def test_plain_cell_prints_and_shows_its_result(notebook):
    cell = notebook.run("plain")
    outputs = notebook.outputs(cell)
    expect(outputs).to_have_count(2)
    expect(outputs.nth(0)).to_have_text("hello from home")
    expect(outputs.nth(1)).to_have_text("42")
    expect(cell.locator(".jp-OutputPrompt").nth(1)).to_have_text(re.compile(r"^\[\d+\]:$"))


def test_html_display_renders_as_html(notebook):
    cell = notebook.run("html")
    bold = cell.locator(".jp-RenderedHTMLCommon b#pxk-html")
    expect(bold).to_have_text("bold from home")


def test_lsmagic_lists_pxkernels_magics(notebook):
    cell = notebook.run("lsmagic")
    out = notebook.outputs(cell)
    expect(out).to_have_count(1)
    for magic in ("%px", "%engines", "%sql", "%lsmagic"):
        expect(out).to_contain_text(magic)
    expect(out).to_contain_text("home kernel")


def test_engines_start_reports_two_engines(notebook):
    cell = notebook.run("engines")
    expect(notebook.outputs(cell)).to_have_text(re.compile(r"Started 2 \S+ engines in .*: ids 0"))


def test_px_output_is_tagged_by_engine(notebook):
    cell = notebook.run("px")
    area = cell.locator(".jp-OutputArea")
    expect(area).to_contain_text("[stdout:0] engine 0")
    expect(area).to_contain_text("[stdout:1] engine 1")


def test_px_past_progress_after_shows_progress_that_ends_final(notebook, page):
    cell = notebook.cell("px_progress")
    # Record every text the cell's progress display shows while the cell runs.
    cell.evaluate(
        """el => {
            window.pxkProgress = [];
            new MutationObserver(() => {
                for (const o of el.querySelectorAll('.jp-OutputArea-output')) {
                    const t = o.innerText;
                    if (t.includes('engines done') && window.pxkProgress.at(-1) !== t) window.pxkProgress.push(t);
                }
            }).observe(el, {subtree: true, childList: true, characterData: true, attributes: true});
        }"""
    )
    notebook.run("px_progress")
    seen = page.evaluate("window.pxkProgress")
    assert any(re.search(r"%px: [01]/2 engines done \(\d+\.\d s\); running: ", t) for t in seen), seen
    # Updated in place: one progress display, in its final form.
    bar = cell.locator("progress")
    expect(bar).to_have_count(1)
    expect(bar).to_have_attribute("value", "2")
    expect(bar).to_have_attribute("max", "2")
    final = cell.locator(".jp-OutputArea-output").filter(has_text="engines done")
    expect(final).to_have_count(1)
    expect(final).to_contain_text(re.compile(r"%px: 2/2 engines done \(\d+\.\d s\)"))
    expect(final).not_to_contain_text("running")
    area = cell.locator(".jp-OutputArea")
    expect(area).to_contain_text("[stdout:0] slept")
    expect(area).to_contain_text("[stdout:1] slept")


def test_sql_shows_a_table(notebook):
    notebook.run("sql_connect")
    cell = notebook.run("sql_table")
    table = cell.locator(".jp-OutputArea-output table")
    expect(table).to_have_count(1)
    expect(table.locator("th")).to_have_text(["id", "name"])
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td")).to_have_text(["1", "rust"])
    expect(rows.nth(1).locator("td")).to_have_text(["2", "python"])


def test_ipywidgets_slider_renders_and_moving_it_changes_the_value(notebook):
    cell = notebook.run("slider")
    slider = cell.locator(".widget-slider")
    expect(slider).to_be_visible()
    readout = slider.locator(".widget-readout")
    expect(readout).to_have_text("3")
    handle = slider.locator(".noUi-handle")
    # ipywidgets holds back updates while one is in flight: the next cell may run only
    # once the browser has sent the kernel the new value.
    with notebook.kernel_socket().expect_event("framesent", predicate=widget_update(value=7)):
        handle.click()
        for _ in range(4):
            handle.press("ArrowRight")
    expect(readout).to_have_text("7")
    printed = notebook.run("slider_value")
    expect(notebook.outputs(printed)).to_have_text("slider at 7")


def test_error_is_shown_as_a_traceback(notebook):
    cell = notebook.run("error")
    err = cell.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    expect(err).to_have_count(1)
    expect(err).to_contain_text("ValueError")
    expect(err).to_contain_text("pxk-lab boom")
