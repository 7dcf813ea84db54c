"""Issue 18 §5: SIGTERM does what a first Ctrl-C does in every phase of a command (it used to
kill outright outside the request phase), and a Ctrl-C while the command is still starting
prints one line, never a KeyboardInterrupt traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from synthcodec.executors.local import on_interrupt
from tests.helpers import cli_env, popen_synthcodec


def test_on_interrupt_puts_back_the_handlers_from_before() -> None:
    """asyncio's remove_signal_handler leaves SIGTERM at SIG_DFL: after the first stage, a
    SIGTERM killed the process outright (publishing, the next stage of `generate`)."""
    seen: list[int] = []

    def ours(signum: int, frame: object) -> None:
        seen.append(signum)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with on_interrupt(loop, lambda: None):
            assert signal.getsignal(signal.SIGTERM) is not ours
        assert signal.getsignal(signal.SIGTERM) is ours
        assert signal.getsignal(signal.SIGINT) is sigint_inside_run  # asyncio.run's own

    before = signal.signal(signal.SIGTERM, ours)
    try:
        sigint_inside_run = None

        async def outer() -> None:
            nonlocal sigint_inside_run
            sigint_inside_run = signal.getsignal(signal.SIGINT)
            await main()

        asyncio.run(outer())
        signal.raise_signal(signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def _wait_for_a_reader(fifo: Path, proc: subprocess.Popen[str], timeout: float = 60) -> int:
    """Open `fifo` for writing once the command has opened it for reading (it then blocks
    reading it: the phase before any request, where the input is checked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.05)
    raise AssertionError("the command never opened its input")


def test_sigterm_while_the_input_is_read_stops_like_ctrl_c(tmp_path: Path) -> None:
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    run = tmp_path / "run"
    proc = popen_synthcodec("complete", str(fifo), "-m", "fake:echo", "-o", str(run))
    writer = _wait_for_a_reader(fifo, proc)
    try:
        os.write(writer, b'{"prompt": "q"}\n')  # a row, and then the input goes on and on
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(writer)
    # A Ctrl-C here ends the command with one line and exit 130.
    assert proc.returncode == 130, (proc.returncode, err)
    assert "aborted" in err and "Traceback" not in err, err
    assert not run.exists()  # nothing was written: the input was still being checked


def test_ctrl_c_while_the_command_is_importing_prints_no_traceback(tmp_path: Path) -> None:
    """Importing click and the command took long enough that 1 Ctrl-C in 30 hit it; here an
    import hook holds `import click` until the signal comes."""
    starter = (
        "import importlib.abc, runpy, sys, time\n"
        "class Slow(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'click':\n"
        "            sys.meta_path.remove(self)\n"
        "            sys.stderr.write('IMPORTING\\n'); sys.stderr.flush()\n"
        "            time.sleep(60)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Slow())\n"
        "sys.argv = ['synthcodec', '--help']\n"
        "runpy.run_module('synthcodec', run_name='__main__', alter_sys=True)\n"
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen([sys.executable, "-c", starter], stderr=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=cli_env())
        assert proc.stderr is not None
        assert proc.stderr.readline() == "IMPORTING\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (sig, proc.returncode, err)
        assert err.strip() == "aborted" and not out, err
