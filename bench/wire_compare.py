#!/usr/bin/env python3
"""The wire-abuse cases of tests/python/test_wire_limits.py against pxkernel and
ipykernel (pyzmq's libzmq), side by side: where pxkernel is stricter.

For each kernel and case, on its shell port: whether the kernel dropped the
connection (within 10 s), how long a jupyter_client kernel_info_request took
afterwards, and how much the kernel's address space (VmSize) and resident memory
grew. One `wire_case kernel= case= dropped= kernel_info_ms= vm_growth_mib=
rss_growth_mib=` line each, then a table. Nothing is asserted.

    python bench/wire_compare.py            # pxkernel (the venv's kernelspec) and python3

Needs the project venv (jupyter_client, ipykernel) with pxkernel's kernelspec
installed (`make install`). Every kernel it starts is shut down.
"""

import socket
import struct
import sys
import time
from pathlib import Path

import psutil
from jupyter_client.manager import start_new_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
from wire_abuse import LONG, MORE, closed_by_peer, connect, greeting, vm_size_kib  # noqa: E402

KERNELS = ("pxkernel", "python3")


def case_garbage(info):
    s = connect(info, "shell_port")
    s.sendall(bytes(range(256)) * 16)
    return [s]


def case_foreign_mechanism(info):
    s = connect(info, "shell_port")
    s.sendall(greeting(b"CURVE"))
    return [s]


def case_frame_of_2_62(info):
    s = connect(info, "shell_port", handshake=True)
    s.sendall(bytes([LONG]) + struct.pack(">Q", 1 << 62) + b"x" * 1000)
    return [s]


def case_four_frames_of_4_gib(info):
    out = []
    for _ in range(4):
        s = connect(info, "shell_port", handshake=True)
        s.sendall(bytes([LONG]) + struct.pack(">Q", (4 << 30) - 1) + b"x" * 1000)
        out.append(s)
    return out


def case_200k_more_frames(info):
    s = connect(info, "shell_port", handshake=True)
    try:
        s.sendall(bytes([MORE, 0]) * 200_000)
    except OSError:
        pass
    return [s]


def case_1000_idle_connections(info):
    return [socket.create_connection((info["ip"], info["shell_port"]), timeout=10) for _ in range(1000)]


CASES = {
    "garbage": case_garbage,
    "foreign_mechanism": case_foreign_mechanism,
    "frame_of_2^62": case_frame_of_2_62,
    "four_frames_of_4GiB-1": case_four_frames_of_4_gib,
    "200k_more_frames": case_200k_more_frames,
    "1000_idle_connections": case_1000_idle_connections,
}


def kernel_info_ms(kc):
    t0 = time.perf_counter()
    kc.kernel_info()
    try:
        kc.get_shell_msg(timeout=30)
    except Exception:  # noqa: BLE001 - no answer is a result here
        return "none"
    return round((time.perf_counter() - t0) * 1e3, 1)


def rss_kib(pid):
    return psutil.Process(pid).memory_info().rss // 1024


def run(kernel):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    km, kc = start_new_kernel(kernel_name=kernel, startup_timeout=60)
    rows = []
    try:
        info = km.get_connection_info()
        pid = km.provisioner.process.pid
        for name, case in CASES.items():
            vm0, rss0 = vm_size_kib(pid), rss_kib(pid)
            conns = case(info)
            # Idle connections are held open by us: "dropped" means the kernel closed them.
            wait = 1.0 if name == "1000_idle_connections" else 10.0
            dropped = sum(closed_by_peer(s, timeout=wait) for s in conns[:20]) == min(len(conns), 20)
            ms = kernel_info_ms(kc)
            vm, rss = (vm_size_kib(pid) - vm0) / 1024, (rss_kib(pid) - rss0) / 1024
            for s in conns:
                s.close()
            rows.append((name, dropped, ms, round(vm, 1), round(rss, 1)))
            print(f"wire_case kernel={kernel} case={name} dropped={int(dropped)} kernel_info_ms={ms} "
                  f"vm_growth_mib={round(vm, 1)} rss_growth_mib={round(rss, 1)}", flush=True)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return rows


def main():
    results = {k: run(k) for k in KERNELS}
    print("#")
    print(f"# {'case':24} " + "  ".join(f"{k + ': dropped, kernel_info ms, VmSize +MiB':44}" for k in KERNELS))
    for i, name in enumerate(CASES):
        cells = []
        for k in KERNELS:
            _, dropped, ms, vm, _ = results[k][i]
            cells.append(f"{'yes' if dropped else 'no':4} {str(ms):>8} {vm:>10}".ljust(44))
        print(f"# {name:24} " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
