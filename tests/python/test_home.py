"""The proxied home kernel, seen through jupyter_client: outputs, counts, stdin,
comms, interrupt, pass-through magics, death and restart."""


import pytest
from jupyter_client.manager import start_new_kernel

from kernel_helpers import (
    TIMEOUT,
    collect,
    execute,
    home_pid,
    interrupt_a_running_cell,
    of_type,
    pxkernel,
    shell_reply,
    stdout_of,
    wait_gone,
)


@pytest.fixture(scope="module")
def kernel():
    with pxkernel() as (km, kc):
        yield km, kc


def test_kernel_info_carries_the_home_language(kernel):
    _, kc = kernel
    msg_id = kc.kernel_info()
    info = shell_reply(kc, msg_id)["content"]
    assert info["implementation"] == "pxkernel"
    assert info["protocol_version"] == "5.5"
    li = info["language_info"]
    for field in ("name", "version", "mimetype", "file_extension", "codemirror_mode", "pygments_lexer", "nbconvert_exporter"):
        assert li.get(field), f"language_info.{field} missing: {li}"
    assert li["name"] == "python" and li["file_extension"] == ".py"


def test_kernel_info_is_complete_before_the_home_answers():
    # A brand-new kernel: the very first reply already has the recorded language_info.
    km, kc = start_new_kernel(kernel_name="pxkernel", startup_timeout=60)
    try:
        # start_new_kernel already waited for one kernel_info; ask on control too.
        msg = kc.session.msg("kernel_info_request", {})
        kc.control_channel.send(msg)
        reply = kc.control_channel.get_msg(timeout=TIMEOUT)
        assert reply["content"]["language_info"]["pygments_lexer"] == "ipython3"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_outputs_are_reparented_and_counted(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "x = 41\nprint('out'); import sys; print('err', file=sys.stderr)\nx + 1")
    assert reply["status"] == "ok"
    assert stdout_of(msgs) == "out\n"
    assert stdout_of(msgs, "stderr") == "err\n"
    (result,) = of_type(msgs, "execute_result")
    assert result["content"]["data"]["text/plain"] == "42"
    assert result["content"]["execution_count"] == reply["execution_count"]
    (inp,) = of_type(msgs, "execute_input")
    assert inp["content"]["execution_count"] == reply["execution_count"]
    assert msgs[0]["content"]["execution_state"] == "busy"
    assert [m["content"]["execution_state"] for m in of_type(msgs, "status")] == ["busy", "idle"]


def test_home_execution_count_follows_ours_across_magic_cells(kernel):
    _, kc = kernel
    execute(kc, "y = 7")
    r1, _ = execute(kc, "%lsmagic")
    r2, msgs = execute(kc, "y * 6")
    assert r2["execution_count"] == r1["execution_count"] + 1
    (result,) = of_type(msgs, "execute_result")
    assert result["content"]["execution_count"] == r2["execution_count"]
    # IPython's own Out[] agrees with the count the frontend shows.
    r3, msgs = execute(kc, f"Out[{r2['execution_count']}]")
    assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "42"


def test_silent_and_unstored_cells_do_not_count(kernel):
    _, kc = kernel
    r1, _ = execute(kc, "1")
    r2, msgs = execute(kc, "print('quiet')", silent=True)
    assert of_type(msgs, "execute_input") == []
    r3, _ = execute(kc, "2", store_history=False)
    r4, _ = execute(kc, "3")
    assert r4["execution_count"] == r1["execution_count"] + 1


def test_display_updates_keep_their_display_id(kernel):
    _, kc = kernel
    code = "h = display('a', display_id='pxk-d1')\nh.update('b')"
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok"
    (shown,) = of_type(msgs, "display_data")
    (updated,) = of_type(msgs, "update_display_data")
    assert shown["content"]["transient"]["display_id"] == "pxk-d1"
    assert updated["content"]["transient"]["display_id"] == "pxk-d1"
    assert updated["content"]["data"]["text/plain"] == "'b'"


def test_clear_output_and_errors_are_relayed(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "from IPython.display import clear_output\nprint(1)\nclear_output(wait=True)\n1/0")
    assert reply["status"] == "error" and reply["ename"] == "ZeroDivisionError"
    assert of_type(msgs, "clear_output")[0]["content"]["wait"] is True
    (err,) = of_type(msgs, "error")
    assert err["content"]["ename"] == "ZeroDivisionError"


def test_magics_we_do_not_own_pass_through(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "%timeit -n1 -r1 pass")
    assert reply["status"] == "ok" and "per loop" in stdout_of(msgs)
    reply, msgs = execute(kc, "%%time\nz = 1")
    assert reply["status"] == "ok" and "Wall time" in stdout_of(msgs)
    reply, msgs = execute(kc, "!echo from-a-shell")
    assert reply["status"] == "ok" and "from-a-shell" in stdout_of(msgs)


def test_input_is_relayed_both_ways(kernel):
    _, kc = kernel
    msg_id = kc.execute("name = input('Who? ')\nprint('hi', name)", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=TIMEOUT)
    assert req["msg_type"] == "input_request"
    assert req["content"] == {"prompt": "Who? ", "password": False}
    assert req["parent_header"]["msg_id"] == msg_id
    kc.input("Ada")
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert "hi Ada" in stdout_of(collect(kc, msg_id))


def test_password_input_sets_the_flag(kernel):
    _, kc = kernel
    msg_id = kc.execute("import getpass\nsecret = getpass.getpass('Key: ')\nprint(len(secret))", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=TIMEOUT)
    assert req["content"]["password"] is True
    kc.input("hunter2")
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stdout_of(collect(kc, msg_id)).strip() == "7"


def test_input_without_stdin_fails_at_once(kernel):
    _, kc = kernel
    reply, _ = execute(kc, "input('x')", allow_stdin=False, timeout=10)
    assert reply["status"] == "error"
    assert reply["ename"] == "StdinNotImplementedError"


def test_comms_are_relayed_both_ways(kernel):
    _, kc = kernel
    setup = (
        "from comm import get_comm_manager\n"
        "def _target(comm, open_msg):\n"
        "    @comm.on_msg\n"
        "    def _echo(msg):\n"
        "        comm.send({'echo': msg['content']['data']}, buffers=msg['buffers'])\n"
        "    comm.send({'opened': open_msg['content']['data']})\n"
        "get_comm_manager().register_target('pxk-echo', _target)\n"
    )
    reply, _ = execute(kc, setup)
    assert reply["status"] == "ok"

    open_msg = kc.session.msg("comm_open", {"comm_id": "c1", "target_name": "pxk-echo", "data": {"hello": 1}})
    kc.shell_channel.send(open_msg)
    opened = collect(kc, open_msg["header"]["msg_id"])
    (sent,) = of_type(opened, "comm_msg")
    assert sent["content"]["data"] == {"opened": {"hello": 1}}

    msg = kc.session.msg("comm_msg", {"comm_id": "c1", "data": {"n": 2}})
    kc.session.send(kc.shell_channel.socket, msg, buffers=[b"\x00\x01binary"])
    echoed = of_type(collect(kc, msg["header"]["msg_id"]), "comm_msg")
    assert echoed[0]["content"]["data"] == {"echo": {"n": 2}}
    assert [bytes(b) for b in echoed[0]["buffers"]] == [b"\x00\x01binary"]

    info_id = kc.comm_info(target_name="pxk-echo")
    comms = shell_reply(kc, info_id)["content"]["comms"]
    assert comms.get("c1", {}).get("target_name") == "pxk-echo"

    # A comm opened by the kernel reaches the frontend.
    reply, msgs = execute(kc, "from comm import create_comm\nc = create_comm(target_name='frontend-t', data={'k': 3})")
    (opened_by_kernel,) = of_type(msgs, "comm_open")
    assert opened_by_kernel["content"]["target_name"] == "frontend-t"
    assert opened_by_kernel["content"]["data"] == {"k": 3}


def test_complete_inspect_and_is_complete_for_plain_code(kernel):
    _, kc = kernel
    execute(kc, "import os")
    msg_id = kc.complete("os.pa", 5)
    reply = shell_reply(kc, msg_id)["content"]
    assert "os.path" in reply["matches"] or "path" in reply["matches"]
    msg_id = kc.inspect("len", 3)
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["found"] and "text/plain" in reply["data"]
    msg_id = kc.is_complete("for i in range(3):")
    assert shell_reply(kc, msg_id)["content"]["status"] == "incomplete"


def test_interrupt_ends_the_cell_and_keeps_state(kernel):
    km, kc = kernel
    execute(kc, "kept = 'still here'")
    reply = interrupt_a_running_cell(km, kc)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    reply, msgs = execute(kc, "print(kept)")
    assert stdout_of(msgs) == "still here\n"


def test_home_death_is_reported_and_the_next_cell_restarts_it():
    with pxkernel() as (km, kc):
        first = home_pid(kc)
        reply, msgs = execute(kc, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        assert reply["status"] == "error"
        assert reply["ename"] == "HomeKernelDied"
        (err,) = of_type(msgs, "error")
        assert "died" in err["content"]["evalue"] and "next cell" in err["content"]["evalue"]
        assert wait_gone([first]) == []

        reply, msgs = execute(kc, "import os; print(os.getpid())")
        assert reply["status"] == "ok"
        assert "started a fresh one" in stdout_of(msgs, "stderr")
        second = int(stdout_of(msgs).strip())
        assert second != first
        # And it keeps working as before.
        reply, msgs = execute(kc, "6 * 7")
        assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "42"
