"""`rag ui` makes no network call of its own.

Inside a network namespace that has only loopback, strace records every connect(), sendto()
and sendmsg() of the server (and bind(), to show the trace works); each must go to 127.0.0.1,
::1 or a Unix socket. Run as a script, this module is the probe run inside that namespace:
start the traced server, load the page, open a WebSocket as another site would, stop.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOOPBACK = {"127.0.0.1", "::1"}
TRACED_CALL = re.compile(r"\b(connect|sendto|sendmsg)\(")
FAMILY = re.compile(r"sa_family=(AF_\w+)")
IPV4 = re.compile(r'inet_addr\("([^"]+)"\)')
IPV6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')


def outside_calls(trace: str) -> list[str]:
    """Traced calls that name any address other than loopback or a Unix socket."""
    bad = []
    for line in trace.splitlines():
        if not TRACED_CALL.search(line):
            continue
        families = FAMILY.findall(line)
        addresses = IPV4.findall(line) + IPV6.findall(line)
        if any(f not in {"AF_UNIX", "AF_INET", "AF_INET6"} for f in families) or any(
            a not in LOOPBACK for a in addresses
        ):
            bad.append(line.strip())
    return bad


@pytest.mark.store_independent
def test_trace_parser_flags_outside_addresses():
    trace = "\n".join(
        [
            '7 connect(3, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("8.8.8.8")}, 16)'
            " = -1 ENETUNREACH (Network is unreachable)",
            '7 connect(5, {sa_family=AF_UNIX, sun_path="/run/x"}, 110) = 0',
            '7 connect(4, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}'
            ", 16) = 0",
            '7 sendto(6, "q", 1, 0, {sa_family=AF_INET6, sin6_port=htons(53), '
            'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), '
            "sin6_scope_id=0}, 28) = -1 ENETUNREACH",
            '7 sendto(8, "GET / HTTP/1.1", 14, 0, NULL, 0) = 14',
        ]
    )
    assert [line.split()[1][:9] for line in outside_calls(trace)] == ["connect(3", "sendto(6,"]


def tools_missing() -> str | None:
    for tool in ("unshare", "strace", "ip"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make system-test-deps)"
    probe = subprocess.run(
        ["unshare", "--net", "--", "strace", "-qq", "-e", "trace=connect", "true"],
        capture_output=True,
    )
    if probe.returncode != 0:
        return f"cannot trace in a network namespace here: {probe.stderr.decode()[-200:]}"
    return None


@pytest.mark.embedded_only  # a namespace with no network reaches no server
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_ui_server_reaches_nothing_but_loopback(host, tmp_path):
    missing = tools_missing()
    if missing:
        pytest.skip(missing)
    trace = tmp_path / "trace"
    from tests.integration.conftest import run_in_namespace

    env = dict(os.environ, RAG_HOME=str(tmp_path / "home"))
    result = run_in_namespace(__file__, host, str(trace), env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout
    assert "page answered" in output and "cross-origin answered" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    calls = trace.read_text()
    assert re.search(r"bind\(.*sa_family=AF_INET", calls), "the server's bind() was not traced"
    assert outside_calls(calls) == []
    warning = "reachable from the network"
    assert (warning in output) == (host == "0.0.0.0"), output[-3000:]


# --- the probe, run inside the namespace ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_page(url: str, server: subprocess.Popen, timeout: float = 180) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def cross_origin_websocket(port: int) -> str:
    """Open the page's WebSocket as a page from another site would; returns the status line."""
    request = (
        "GET /_stcore/stream HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Origin: http://intranet.example:8080\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def tracee(strace_pid: int) -> int | None:
    """The pid strace started (the server), read from /proc."""
    children = Path(f"/proc/{strace_pid}/task/{strace_pid}/children")
    try:
        pids = children.read_text().split()
    except OSError:
        return None
    return int(pids[0]) if pids else None


def probe(host: str, trace: str) -> None:
    port = free_port()
    password = []  # off loopback `rag ui` starts only with a password
    if host != "127.0.0.1":
        given = Path(trace).with_name("password.txt")
        given.write_text("a password for this test\n")
        password = ["--password-file", str(given)]
    server = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=bind,connect,sendto,sendmsg", "-o", trace]
        + [str(BIN / "rag"), "ui", "--host", host, "--port", str(port), *password],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = wait_for_page(f"http://127.0.0.1:{port}/", server)
        print(f"page answered ({len(page)} bytes)", flush=True)
        print(f"cross-origin answered: {cross_origin_websocket(port)}", flush=True)
        time.sleep(1)
    finally:
        pid = tracee(server.pid)
        os.kill(pid or server.pid, signal.SIGTERM)
        try:
            output = server.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0]
        print(output, flush=True)


if __name__ == "__main__":
    probe(sys.argv[1], sys.argv[2])
