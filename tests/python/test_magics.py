"""pxkernel's own magics: %lsmagic, help, completion and inspection of magic names."""

import pytest

from kernel_helpers import execute, of_type, pxkernel, shell_reply


@pytest.fixture(scope="module")
def kc():
    with pxkernel() as (_, kc):
        yield kc


def test_lsmagic_lists_our_magics_and_points_to_the_home(kc):
    reply, msgs = execute(kc, "%lsmagic")
    assert reply["status"] == "ok"
    (result,) = of_type(msgs, "execute_result")
    text = result["content"]["data"]["text/plain"]
    assert "%lsmagic" in text and "home kernel (python3)" in text
    assert "<table>" in result["content"]["data"]["text/html"]
    assert result["content"]["execution_count"] == reply["execution_count"]


def test_lsmagic_rejects_arguments_with_a_usage_error(kc):
    reply, msgs = execute(kc, "%lsmagic --bogus")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    (err,) = of_type(msgs, "error")
    assert "--bogus" in err["content"]["evalue"]


def test_magic_help_opens_the_pager(kc):
    reply, _ = execute(kc, "%lsmagic?")
    assert reply["status"] == "ok"
    (page,) = reply["payload"]
    assert page["source"] == "page"
    assert page["data"]["text/plain"].startswith("%lsmagic")


def test_magic_names_complete_together_with_the_home_magics(kc):
    msg_id = kc.complete("%ls", 3)
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["matches"][0] == "%lsmagic"
    assert reply["cursor_start"] == 0 and reply["cursor_end"] == 3
    msg_id = kc.complete("%tim", 4)
    reply = shell_reply(kc, msg_id)["content"]
    assert "%timeit" in reply["matches"], "the home kernel's magics complete too"


def test_inspect_shows_magic_help(kc):
    msg_id = kc.inspect("%lsmagic", 4)
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["found"] is True
    assert "home kernel" in reply["data"]["text/plain"]


def test_leading_magic_then_code_runs_both(kc):
    reply, msgs = execute(kc, "%lsmagic\nprint('after')")
    assert reply["status"] == "ok"
    assert of_type(msgs, "execute_result")
    assert any(m["content"].get("text") == "after\n" for m in of_type(msgs, "stream"))
