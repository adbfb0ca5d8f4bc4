"""Find the user's `geosam` command and run it with progress, cancel and one-line errors.

QGIS's Python has no torch, so the algorithms run `geosam --progress json ...` of the user's
own environment in a subprocess. geosam then prints one JSON object per line on stderr
({"progress": 0.42, "message": ...}) and, on failure, one line `Error: ...` with exit code 1.
This module imports nothing from QGIS: `feedback` is anything with QgsProcessingFeedback's
methods (setProgress, setProgressText, pushInfo, isCanceled).
"""

from __future__ import annotations

import glob
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from .defaults import MIN_GEOSAM_VERSION

ENV_VAR = "GEOSAM_COMMAND"
"""Environment variable naming the geosam command (a path, or a command line)."""

RECORD_FILE = "geosam_command.json"
"""Written beside this file by `geosam qgis install`: the command that installed the plugin."""

CANCEL_GRACE_S = 5.0
"""Seconds between SIGTERM (geosam cleans up its partial outputs) and a hard kill."""

FOREIGN_ENV = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA")
"""QGIS's own settings that would break another Python or another PROJ/GDAL build."""


class GeosamCommandError(Exception):
    """geosam is missing, too old, or failed; the message is one line for the user."""


class GeosamCancelled(Exception):
    """The user cancelled; geosam was stopped."""


def candidates(configured: str = "") -> list[list[str]]:
    """Commands to try, best first.

    The setting, $GEOSAM_COMMAND, the record of `geosam qgis install`, `geosam` on PATH, then
    common virtual environment and conda locations.
    """
    found: list[list[str]] = []
    for text in (configured.strip(), os.environ.get(ENV_VAR, "").strip()):
        if text:
            found.append(
                [text] if Path(text).is_file() else shlex.split(text, posix=os.name != "nt")
            )
    record = Path(__file__).with_name(RECORD_FILE)
    if record.is_file():
        try:
            command = json.loads(record.read_text(encoding="utf-8")).get("command")
        except (OSError, ValueError):
            command = None
        if isinstance(command, list) and command:
            found.append([str(c) for c in command])
    on_path = shutil.which("geosam")
    if on_path:
        found.append([on_path])
    exe = "Scripts/geosam.exe" if os.name == "nt" else "bin/geosam"
    home = Path.home()
    patterns = [
        f"{home}/.venv/{exe}",
        f"{home}/venv/{exe}",
        f"{home}/.local/{exe}",
        f"{home}/*/.venv/{exe}",
        f"{home}/*/*/.venv/{exe}",
        f"{home}/miniforge3/envs/*/{exe}",
        f"{home}/mambaforge/envs/*/{exe}",
        f"{home}/miniconda3/envs/*/{exe}",
        f"{home}/anaconda3/envs/*/{exe}",
    ]
    for pattern in patterns:
        found.extend([p] for p in sorted(glob.glob(pattern)))
    return found


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


_CHECKED: dict[tuple[object, ...], str] = {}
"""Versions already asked, by command and the time its file changed (an upgrade asks again)."""


def version_of(command: list[str]) -> str:
    """`geosam --version` of `command` ("0.1.0"); GeosamCommandError if it does not run."""
    try:
        changed = os.path.getmtime(command[0])
    except OSError:
        changed = None
    key = (*command, changed)
    if key not in _CHECKED:
        try:
            done = subprocess.run(
                [*command, "--version"],
                capture_output=True,
                text=True,
                timeout=120,
                env=clean_env(),
                **_hidden_window(),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise GeosamCommandError(f"{' '.join(command)}: does not run ({exc})") from exc
        match = re.search(r"version\s+(\S+)", done.stdout)
        if done.returncode != 0 or match is None or "geosam" not in done.stdout:
            raise GeosamCommandError(f"{' '.join(command)}: is not the geosam command")
        _CHECKED[key] = match.group(1)
    return _CHECKED[key]


def find_command(configured: str = "") -> list[str]:
    """The geosam command to run, checked to be at least `MIN_GEOSAM_VERSION`.

    Raises:
        GeosamCommandError: none found, or the one configured is too old or not geosam.
    """
    tried = candidates(configured)
    too_old: list[str] = []
    for command in tried:
        try:
            version = version_of(command)
        except GeosamCommandError:
            if command in tried[: 1 if configured.strip() else 0]:
                raise
            continue
        if _version_tuple(version) >= _version_tuple(MIN_GEOSAM_VERSION):
            return command
        too_old.append(f"{' '.join(command)} is {version}")
    if too_old:
        raise GeosamCommandError(
            f"geosam too old ({'; '.join(too_old)}); the plugin needs {MIN_GEOSAM_VERSION} or "
            "newer: pip install -U geosam-ships"
        )
    raise GeosamCommandError(
        "geosam command not found: install it (pip install geosam-ships) and run "
        "`geosam qgis install`, or set its path in Settings > Options > Processing > "
        f"Providers > geosam, or the {ENV_VAR} environment variable"
    )


def clean_env() -> dict[str, str]:
    """The environment of QGIS without QGIS's Python and PROJ/GDAL settings."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _hidden_window() -> dict[str, Any]:
    """On Windows: no console window, and a process group that CTRL_BREAK can reach."""
    if os.name != "nt":
        return {}
    flags = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return {"creationflags": flags}


def run(command: list[str], args: list[str], feedback: Any) -> list[str]:
    """Run `command --progress json ARGS`, reporting to `feedback`; return its stdout lines.

    Progress lines set the progress bar and text; lines carrying "metrics" and everything on
    stdout go to the log. Cancelling sends SIGTERM (geosam removes its partial outputs, as
    after Ctrl-C), then kills after `CANCEL_GRACE_S` seconds.

    Raises:
        GeosamCancelled: `feedback.isCanceled()` became true.
        GeosamCommandError: geosam failed; the message is its one-line error.
    """
    full = [*command, "--progress", "json", *args]
    feedback.pushCommandInfo(" ".join(shlex.quote(a) for a in full))
    with subprocess.Popen(
        full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=clean_env(),
        **_hidden_window(),
    ) as process:
        try:
            stdout, errors = _follow(process, feedback)
        except BaseException:
            _stop(process)  # never leave geosam running behind a failed or cancelled run
            raise
        code = process.wait()
    if feedback.isCanceled():
        raise GeosamCancelled("cancelled")
    if code != 0:
        raise GeosamCommandError(_error_line(errors, code))
    return stdout


def _follow(process: subprocess.Popen[str], feedback: Any) -> tuple[list[str], list[str]]:
    """Report `process`'s output until it closes both pipes: (stdout, stderr) lines kept."""
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    for stream, name in ((process.stdout, "out"), (process.stderr, "err")):
        threading.Thread(target=_pump, args=(stream, name, lines), daemon=True).start()
    stdout: list[str] = []
    errors: list[str] = []
    open_streams = 2
    while open_streams:
        if feedback.isCanceled():
            raise GeosamCancelled("cancelled")
        try:
            name, line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
        elif name == "out":
            stdout.append(line)
            feedback.pushInfo(line)
        else:
            _report(line, feedback, errors)
    return stdout, errors


def _pump(stream: Any, name: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    try:
        for line in stream:
            lines.put((name, line.rstrip("\r\n")))
    except (OSError, ValueError):  # the pipe was closed after a cancel
        pass
    lines.put((name, None))


def _report(line: str, feedback: Any, errors: list[str]) -> None:
    """One stderr line: progress JSON, an `Error: ...` line, or a log line."""
    if line.startswith("{"):
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and "progress" in event:
            feedback.setProgress(100.0 * float(event["progress"]))
            message = str(event.get("message", ""))
            feedback.setProgressText(message)
            if "metrics" in event:
                feedback.pushInfo(message)
            return
    if not line.strip():
        return
    errors.append(line)
    if not line.startswith("Error:"):
        feedback.pushDebugInfo(line)


def _error_line(errors: list[str], code: int) -> str:
    """Geosam's own one-line error, else its last stderr line, else the exit code."""
    for line in reversed(errors):
        if line.startswith("Error:"):
            return line[len("Error:") :].strip()
    if errors:
        return errors[-1].strip()
    return f"geosam stopped with exit code {code}"


def _stop(process: subprocess.Popen[str]) -> None:
    """Ask geosam to stop (it cleans up like after Ctrl-C); kill it if it does not."""
    if process.poll() is not None:
        return
    try:
        if os.name == "nt":
            process.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=CANCEL_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except OSError:
        pass
