"""`geosam qgis install`: the geosam Processing provider in QGIS's toolbox."""

from __future__ import annotations

from pathlib import Path

import click

from geosam.qgis_plugin.install import (
    PLUGIN_NAME,
    geosam_command,
    install_plugin,
    package_plugin,
    plugins_folder,
)


@click.group()
def qgis() -> None:
    """Use geosam from QGIS: a Processing provider with tile, fine-tune, detect, evaluate.

    \b
    Examples:
      geosam qgis install                    into QGIS's default profile
      geosam qgis install --profile work
      geosam qgis package dist/geosam_provider.zip    for Plugins > Install from ZIP
    """


@qgis.command()
@click.option(
    "--profile", default="default", show_default=True, help="QGIS user profile to install into."
)
@click.option(
    "--plugins-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Install into this plugins folder instead of the profile's.",
)
def install(profile: str, plugins_dir: Path | None) -> None:
    """Copy the plugin into a QGIS profile; it runs this environment's geosam command.

    QGIS's own Python needs no torch: the algorithms run `geosam` in a subprocess. After
    installing, enable "geosam" in Plugins > Manage and Install Plugins (or run
    `qgis_process plugins enable geosam_provider`), then find it in the Processing toolbox.
    """
    target = install_plugin(plugins_dir or plugins_folder(profile))
    click.echo(f"installed the QGIS plugin in {target}")
    click.echo(f"it runs: {' '.join(geosam_command())}")
    click.echo(
        "enable it in QGIS: Plugins > Manage and Install Plugins > Installed > geosam "
        f"(or: qgis_process plugins enable {PLUGIN_NAME})"
    )


@qgis.command()
@click.argument("zip_path", type=click.Path(dir_okay=False, path_type=Path))
def package(zip_path: Path) -> None:
    """Write the plugin as ZIP_PATH for QGIS's Plugins > Install from ZIP."""
    click.echo(f"wrote {package_plugin(zip_path)}")
