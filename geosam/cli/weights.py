"""`geosam weights`: download Meta's official SAM weights and see which ones are cached."""

from __future__ import annotations

from pathlib import Path

import click

from geosam.cli.progress import ProgressBar
from geosam.model.checkpoints import cache_dir
from geosam.model.registry import get_spec, model_names
from geosam.model.weights import download_weights

OFFICIAL_TYPES = [name for name in model_names() if get_spec(name).official_filename]

dir_opt = click.option(
    "--dir",
    "dest_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Weights folder (default: $GEOSAM_HOME/checkpoints or ~/.cache/geosam/checkpoints, "
    "where training and detection look).",
)


@click.group()
def weights() -> None:
    """Download official SAM weights and list the cached ones.

    \b
    Examples:
      geosam weights list
      geosam weights download vit_b
      geosam weights download vit_b --url https://mirror.example/sam_vit_b_01ec64.pth
    """


@weights.command()
@click.argument("model_type", type=click.Choice(OFFICIAL_TYPES))
@click.option("--url", default=None, help="Download from this mirror instead of Meta's server.")
@dir_opt
@click.pass_context
def download(ctx: click.Context, model_type: str, url: str | None, dest_dir: Path | None) -> None:
    """Download official weights and check their sha256.

    Fetches MODEL_TYPE's file from Meta (or --url) under its official name (e.g.
    sam_vit_b_01ec64.pth), checks it against the hash in that name, and puts it in place
    only once complete. An existing file is kept. Sizes: vit_b 375 MB, vit_l 1.2 GB,
    vit_h 2.6 GB.

    \b
    Examples:
      geosam weights download vit_b
      geosam weights download vit_h --dir /data/sam-weights
    """
    quiet = bool((ctx.find_root().obj or {}).get("quiet"))
    with ProgressBar(f"Downloading {model_type}", "MiB", quiet=quiet) as bar:
        path = download_weights(
            model_type,
            dest_dir=dest_dir,
            url=url,
            progress=lambda done, total: bar(done >> 20, total >> 20),
        )
    click.echo(str(path))


@weights.command(name="list")
@dir_opt
def list_weights(dest_dir: Path | None) -> None:
    """List model types and their cached weights."""
    folder = dest_dir if dest_dir is not None else cache_dir()
    click.echo(f"Weights folder: {folder}")
    for name in model_names():
        filename = get_spec(name).official_filename
        if filename is None:
            click.echo(f"{name:<6} no official weights; trained from scratch")
            continue
        path = folder / filename
        if path.is_file():
            state = f"cached   {path}"
        else:
            state = f"missing  (run: geosam weights download {name})"
        click.echo(f"{name:<6} {filename:<22} {state}")
