"""The `geosam` command group: logging, version, and one-line errors instead of tracebacks."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from geosam import __version__
from geosam.cli.progress import PROGRESS_MODES
from geosam.errors import GeosamError

COMMANDS = {
    "tile": "geosam.cli.tile:tile",
    "finetune": "geosam.cli.finetune:finetune_cmd",
    "detect": "geosam.cli.detect:detect_cmd",
    "evaluate": "geosam.cli.evaluate:evaluate_cmd",
    "weights": "geosam.cli.weights:weights",
    "qgis": "geosam.cli.qgis:qgis",
}
"""Command name -> "module:attribute", imported only when the command runs (or --help lists
it): `geosam tile` then starts without importing torch, which only the model commands need."""


class GeosamGroup(click.Group):
    """A click group that loads its commands lazily and reports `GeosamError` as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, the lazy ones included, in the order of `COMMANDS`."""
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command `cmd_name`, importing its module on first use."""
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, name=cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn a `GeosamError` into one line on stderr.

        SIGTERM (what the QGIS plugin sends on Cancel, and what `kill` sends) is handled like
        Ctrl-C, so the cleanup of partial outputs runs for either.
        """
        try:
            with _terminate_as_interrupt():
                return super().invoke(ctx)
        except GeosamError as exc:
            if logging.getLogger("geosam").isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; finished outputs are kept, nothing half-written.", err=True)
            sys.exit(130)


@click.group(cls=GeosamGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geosam")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output (-vv: debug, tracebacks, and the libraries' own warnings).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.option(
    "--progress",
    "progress",
    type=click.Choice(PROGRESS_MODES),
    default="bar",
    show_default=True,
    help="How to show progress: bars, or one JSON object per line on stderr "
    '({"progress": 0.42, "message": ...}) for programs such as the QGIS plugin.',
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, progress: str) -> None:
    """Teach Segment Anything to find ships in your GeoTIFF scenes.

    \b
    Typical workflow:
      geosam tile scene.tif chips/ --labels ships.gpkg     look at chips and labels
      geosam finetune scene.tif ships.gpkg --out run/      fine-tune SAM
      geosam detect new_scene.tif --model run/model.pt -o ships.gpkg
    """
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    # The console shows `level`; file handlers (e.g. a run's log) may ask the package for more.
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_geosam_console", False)]
    console._geosam_console = True  # type: ignore[attr-defined]
    if verbose < 2:
        console.addFilter(_own_words)
    root.addHandler(console)
    logging.getLogger("geosam").setLevel(level)
    # Python warnings of the libraries (shapely, pyogrio, torch) become log records, which
    # the console shows from -vv on; geosam reports what matters in its own words.
    logging.captureWarnings(True)
    ctx.obj = {"quiet": quiet, "progress": progress}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (and SIGBREAK on Windows) raise KeyboardInterrupt."""
    names = ("SIGTERM", "SIGBREAK")
    signals = [getattr(signal, n) for n in names if hasattr(signal, n)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _interrupt) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _own_words(record: logging.LogRecord) -> bool:
    """Only geosam's own log records reach the console below -vv (no library noise)."""
    return record.name == "geosam" or record.name.startswith("geosam.")
