"""The `geosam` command group: logging, version, and one-line errors instead of tracebacks."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from geosam import __version__
from geosam.errors import GeosamError


class GeosamGroup(click.Group):
    """A click group that reports `GeosamError` as one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn a `GeosamError` into one line on stderr."""
        try:
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
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug and tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
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
    root.addHandler(console)
    logging.getLogger("geosam").setLevel(level)
    ctx.obj = {"quiet": quiet}


def _register() -> None:
    from geosam.cli.detect import detect_cmd
    from geosam.cli.evaluate import evaluate_cmd
    from geosam.cli.finetune import finetune_cmd
    from geosam.cli.tile import tile
    from geosam.cli.weights import weights

    cli.add_command(tile)
    cli.add_command(finetune_cmd, name="finetune")
    cli.add_command(detect_cmd, name="detect")
    cli.add_command(weights)
    cli.add_command(evaluate_cmd, name="evaluate")


_register()
