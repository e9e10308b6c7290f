"""Start `srgrpo serve` as a child process and wait until it listens: for a training script that
wants its own reward server, for tests and for benchmarks. Standard library only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from typing import Sequence

_LISTENING = re.compile(r"on (http://[^\s/]+:\d+)/get_reward")


def start_server(args: Sequence[str], env: dict | None = None, timeout: float = 300.0) -> tuple[subprocess.Popen, str, list[str]]:
    """Run `python -m srgrpo.cli serve *args` (pass `--port 0` for a free port) and return (process,
    base URL, the stderr lines so far, which keep growing). RuntimeError with the server's output if
    it has not said where it listens within `timeout` seconds."""
    proc = subprocess.Popen([sys.executable, "-m", "srgrpo.cli", "serve", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    lines: list[str] = []
    url: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            found = _LISTENING.search(line)
            if found and not url:
                url.append(found.group(1))
                ready.set()
        ready.set()  # the process ended

    threading.Thread(target=read, name="srgrpo-serve-log", daemon=True).start()
    if not ready.wait(timeout) or not url:
        proc.kill()
        raise RuntimeError("the reward server did not start:\n" + "".join(lines))
    return proc, url[0], lines
