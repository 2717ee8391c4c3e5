"""The ``torchconform`` command in a process of its own that does not import torch again.

Each ``python -m torchconform`` a test starts spends ~2 s importing torch before the command does anything, and ~1 s
tearing its modules down after; the default tier runs over a hundred commands. A fork server keeps one interpreter
per pytest worker that has imported torch and torchconform and done nothing else: no tensor op, no thread of its own
(it checks), no test state. Each command is a ``fork()`` of it that changes to the caller's directory and
environment, points its stdin at /dev/null and its stdout and stderr at files, and runs ``torchconform`` as
``python -m`` does (``runpy``, ``__main__``): its own process, exit status, signals and uncaught tracebacks, as a
user's command has them. It leaves as an interpreter does, less the teardown of every module: threads joined, atexit
handlers run, stdio flushed, then ``os._exit``.

What a fork cannot give is a setting read while torch is imported. A command whose environment differs from the
server's in anything but the variables below (read when the command runs) runs in a fresh interpreter, as does every
command when the server cannot start. ``tc(..., fresh=True)`` asks for a fresh interpreter;
``TORCHCONFORM_TESTS_FORKSERVER=0`` turns the server off. Each worker prints how its commands ran
(build/test-results/tc-commands-*.summary.txt), and test_cli.py checks that a fork and a fresh interpreter give the
same exit status and output.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

# Variables a command reads when it runs (torchconform's own, the cache root, the search path, pytest's per-test
# bookkeeping, the terminal width argparse asks for): a difference in these does not need a fresh interpreter.
CALL_TIME = ("TORCHCONFORM_", "PYTEST_", "XDG_CACHE_HOME", "PATH", "COLUMNS")
# Inductor's settings are read when torch._inductor is imported, which the server has not done (it says so): in the
# child, that is when the command runs. (Inductor writes TORCHINDUCTOR_CACHE_DIR into os.environ when a test first
# compiles in its own process, so without this every later command would need a fresh interpreter.)
INDUCTOR = "TORCHINDUCTOR_"

SERVER = r"""
import atexit, json, os, runpy, sys, threading
requests = os.fdopen(os.dup(0), "r")
replies = os.fdopen(os.dup(1), "w", buffering=1)
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 0)
os.dup2(null, 1)
import numpy  # noqa: F401  (its OpenBLAS starts a thread server, which re-forms itself after a fork: pthread_atfork)
before = len(os.listdir("/proc/self/task"))
import torch  # noqa: F401
import torchconform.faces.cli  # noqa: F401
replies.write(json.dumps({"new_threads": len(os.listdir("/proc/self/task")) - before,
                          "inductor_imported": "torch._inductor" in sys.modules}) + "\n")
for line in requests:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        requests.close()
        replies.close()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.close(null)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = ["torchconform", *request["args"]]
        sys.path[0] = os.getcwd()  # (as python -m puts it)
        try:
            runpy.run_module("torchconform", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        # What an interpreter does at exit that a command can see (non-daemon threads joined, atexit handlers and
        # weakref finalizers run, stdio flushed), without tearing down torch's modules one by one (~1 s of a ~3 s
        # command that imports torch).
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code & 0xFF)
    replies.write(json.dumps({"pid": pid}) + "\n")
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
"""


class ForkServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._env: dict[str, str] = {}
        self._call_time = CALL_TIME
        self._pending = b""
        self._broken = os.environ.get("TORCHCONFORM_TESTS_FORKSERVER", "1") == "0"
        self.tally: Counter[str] = Counter()  # how tc() ran commands: "forked", or "fresh: " and why

    def _start(self) -> bool:
        if self._broken:
            return False
        if self._proc is not None and self._proc.poll() is None:
            return True
        self._env = dict(os.environ)
        self._proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, bufsize=1)
        self._pending = b""
        ready = self._read(300)
        self._call_time = CALL_TIME if ready is None or ready.get("inductor_imported", True) else (*CALL_TIME,
                                                                                                    INDUCTOR)
        # A thread that torch or torchconform started at import (an OpenMP pool) would not survive a fork: no
        # server, then.
        if ready is None or ready.get("new_threads") != 0:
            self.close()
            self._broken = True
            return False
        return True

    def _read(self, timeout: float | None) -> dict | None:
        """The server's next reply, or None when none came in ``timeout`` seconds (or it ended). Read from the file
        descriptor itself: a buffered reader could hold a second reply that select() would then not see."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def why_fresh(self, env: dict[str, str]) -> str:
        """Why a command with ``env`` cannot be a fork of the server (started now if need be); "" when it can."""
        if not self._start():
            return "no fork server"
        keys = set(env) | set(self._env)
        changed = sorted(k for k in keys if env.get(k) != self._env.get(k) and not k.startswith(self._call_time))
        return f"{', '.join(changed)} changed" if changed else ""

    def summary(self) -> str:
        return "".join(f"{n:5d} {how}\n" for how, n in sorted(self.tally.items()))

    def run(self, command: tuple[str, ...], args: list[str], cwd: Path | None, env: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess[str]:
        """``command`` (``python -m torchconform``) with ``args`` as a fork of the server: a CompletedProcess, or
        TimeoutExpired, as subprocess.run(capture_output=True, text=True) gives them."""
        with self._lock, tempfile.TemporaryDirectory(prefix="tc-fork-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"args": args, "cwd": os.path.abspath(cwd or os.getcwd()), "env": env,
                                               "stdout": str(out), "stderr": str(err)}) + "\n")
            started = self._read(60)
            if started is None:
                raise RuntimeError("the tests' fork server stopped answering")
            done = self._read(timeout)
            cmd = [*command, *args]
            if done is None:
                os.kill(started["pid"], signal.SIGKILL)
                self._read(60)
                raise subprocess.TimeoutExpired(cmd, timeout, self._text(out), self._text(err))
            return subprocess.CompletedProcess(cmd, done["status"], self._text(out), self._text(err))

    @staticmethod
    def _text(path: Path) -> str:
        # (as text=True decodes a pipe: the locale's encoding, universal newlines)
        return path.read_text() if path.is_file() else ""


SERVER_FOR_THIS_WORKER = ForkServer()
