"""``recagent serve`` in its own process, for the integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, db_url: str, log: Path, *, data: Path | None, llm: str = "none",
                 timeout: float = 240, env: dict[str, str] | None = None) -> Server:
    """``recagent serve`` in its own process (``env``: extra ``RECAGENT_*`` settings);
    returns once /readyz says ready."""
    port = _free_port()
    cmd = [sys.executable, "-m", "recagent.cli", "serve", "--port", str(port), "--llm", llm,
           "--db-url", db_url]
    if data is not None:
        cmd += ["--data", str(data)]
    env = {**os.environ, "RECAGENT_HOME": str(home), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"recagent serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return Server(url, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise AssertionError(f"recagent serve not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
