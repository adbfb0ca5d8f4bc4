"""Copy the QGIS plugin into a QGIS profile, or zip it for the plugin manager.

The plugin runs the `geosam` command in a subprocess (QGIS's Python has no torch); the copy
installed here records which command installed it, so QGIS finds this environment's geosam.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from geosam.io.atomic import atomic_path

PLUGIN_NAME = "geosam_provider"
"""Folder name of the plugin (also its name in QGIS's plugin list)."""

RECORD_FILE = "geosam_command.json"
"""The command the installed plugin runs (read by geosam_provider/command.py)."""

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", RECORD_FILE)


def plugin_source() -> Path:
    """The plugin folder inside the installed geosam package."""
    return Path(__file__).resolve().with_name(PLUGIN_NAME)


def profiles_root() -> Path:
    """QGIS 3's profiles folder on this system ($QGIS_CUSTOM_CONFIG_PATH/profiles if set)."""
    custom = os.environ.get("QGIS_CUSTOM_CONFIG_PATH")
    if custom:
        return Path(custom) / "profiles"
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "QGIS" / "QGIS3" / "profiles"


def plugins_folder(profile: str = "default") -> Path:
    """The Python plugins folder of QGIS profile `profile`."""
    return profiles_root() / profile / "python" / "plugins"


def geosam_command() -> list[str]:
    """The command that runs this geosam: its console script, else `python -m geosam`."""
    scripts = Path(sys.executable).parent
    for name in ("geosam", "geosam.exe"):
        if (scripts / name).is_file():
            return [str(scripts / name)]
    return [sys.executable, "-m", "geosam"]


def install_plugin(plugins: Path) -> Path:
    """Copy the plugin into folder `plugins`, replacing an older copy; returns its folder.

    The copy is made under a hidden name and renamed when complete, so QGIS never sees half a
    plugin.
    """
    target = plugins / PLUGIN_NAME
    staging = plugins / f".{PLUGIN_NAME}.geosam-partial"
    plugins.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(plugin_source(), staging, ignore=IGNORED)
        record = {"command": geosam_command()}
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def package_plugin(zip_path: Path) -> Path:
    """Write the plugin as a zip for QGIS's "Install from ZIP" (one top folder)."""
    source = plugin_source()
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if (
                path.is_file()
                and not IGNORED(str(path.parent), [path.name])
                and not any(part == "__pycache__" for part in relative.parts)
            ):
                zf.write(path, f"{PLUGIN_NAME}/{relative.as_posix()}")
    return zip_path
