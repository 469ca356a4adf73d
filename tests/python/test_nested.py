"""A pxkernel whose home kernel is another pxkernel: relays across two hops, and
exercises a home kernel with interrupt_mode "message"."""

import os
import subprocess

import pytest
from jupyter_client.manager import start_new_kernel

from kernel_helpers import (
    descendants,
    execute,
    interrupt_a_running_cell,
    kernel_pid,
    of_type,
    stdout_of,
    wait_gone,
)


@pytest.fixture(scope="module")
def nested(pxkernel_bin):
    prefix = os.environ["JUPYTER_PATH"].rsplit("/share/jupyter", 1)[0]
    subprocess.run(
        [str(pxkernel_bin), "install", "--prefix", prefix, "--name", "pxk-nested", "--home", "pxkernel"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    km, kc = start_new_kernel(kernel_name="pxk-nested", startup_timeout=60)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=False)


def test_outputs_cross_two_proxies(nested):
    _, kc = nested
    reply, msgs = execute(kc, "print('deep'); 6 * 7")
    assert reply["status"] == "ok"
    assert stdout_of(msgs) == "deep\n"
    (result,) = of_type(msgs, "execute_result")
    assert result["content"]["data"]["text/plain"] == "42"
    assert result["content"]["execution_count"] == reply["execution_count"]


def test_message_mode_home_is_interrupted_by_message(nested):
    km, kc = nested
    execute(kc, "kept = 1")
    reply = interrupt_a_running_cell(km, kc)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    reply, msgs = execute(kc, "print(kept)")
    assert stdout_of(msgs) == "1\n"


def test_shutdown_stops_all_three_levels(pxkernel_bin, nested):
    km, kc = start_new_kernel(kernel_name="pxk-nested", startup_timeout=60)
    execute(kc, "1")
    pids = [kernel_pid(km), *descendants(kernel_pid(km))]
    assert len(pids) >= 3, pids
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    assert wait_gone(pids) == []
