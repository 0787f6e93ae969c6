"""Several ``gridpatrol`` commands in one process: the real CLI (the same Typer app, argument parsing,
settings from the environment, exit codes and output), paying the interpreter's start and the imports
once instead of once a command. Tests that run many commands in a row against one environment use it;
single commands (and the entry point itself) still go through :func:`tests.support.procs.run_cli`.

Two halves in one file:

* run as a script by the venv's Python with a JSON list of argument lists, it runs each command in
  turn and prints one JSON object ``{"results": [[returncode, stdout, stderr], ...]}``;
* imported, :func:`run_cli_batch` starts that script and returns a ``CompletedProcess`` per command.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_cli_batch(
    commands: list[list[str]], env: dict[str, str], *, timeout: float = 300
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``gridpatrol <args>`` for each of ``commands``, in order, in one process with ``env``."""
    done = subprocess.run(
        [sys.executable, "-P", __file__, json.dumps(commands)],  # -P: its folder would shadow stdlib modules
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the CLI batch itself failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    results = json.loads(done.stdout)["results"]
    assert len(results) == len(commands), results
    return [
        subprocess.CompletedProcess(["gridpatrol", *args], code, out, err)
        for args, (code, out, err) in zip(commands, results, strict=True)
    ]


def _run_one(command: Any, args: list[str]) -> tuple[int, str, str]:  # pragma: no cover - in the batch
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            command.main(args=args, prog_name="gridpatrol", standalone_mode=True)
        except SystemExit as exit_:
            if isinstance(exit_.code, int):
                code = exit_.code
            elif exit_.code is not None:  # sys.exit("message"): printed to stderr, status 1
                print(exit_.code, file=sys.stderr)
                code = 1
    return code, out.getvalue(), err.getvalue()


def _main(commands: list[list[str]]) -> None:  # pragma: no cover - in the batch
    import logging

    import typer.main

    from gridpatrol.cli import app

    class CurrentStderr:  # log lines land in the stderr captured for the command running now
        def write(self, text: str) -> None:
            sys.stderr.write(text)

        def flush(self) -> None:
            sys.stderr.flush()

    # as gridpatrol.cli.main and gridpatrol.logging_json.configure_logging("text") do
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=CurrentStderr()
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    command = typer.main.get_command(app)
    real_stdout = sys.stdout
    results = [_run_one(command, args) for args in commands]
    real_stdout.write(json.dumps({"results": results}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    _main(json.loads(sys.argv[1]))
