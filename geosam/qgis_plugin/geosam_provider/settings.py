"""The provider's one setting: where the geosam command is (Processing > Providers > geosam)."""

from __future__ import annotations

from processing.core.ProcessingConfig import ProcessingConfig, Setting

COMMAND_SETTING = "GEOSAM_COMMAND"
"""Key under Processing/Configuration in QgsSettings."""


def add_settings(group: str) -> None:
    """Show the setting in Settings > Options > Processing > Providers > `group`."""
    ProcessingConfig.addSetting(
        Setting(
            group,
            COMMAND_SETTING,
            "geosam command (empty: GEOSAM_COMMAND, `geosam qgis install`'s record, PATH)",
            "",
            valuetype=Setting.FILE,
        )
    )
    ProcessingConfig.readSettings()


def remove_settings() -> None:
    """Forget the setting's entry when the provider unloads (the stored value stays)."""
    ProcessingConfig.removeSetting(COMMAND_SETTING)


def configured_command() -> str:
    """The command set by the user, or "" to find it automatically."""
    return str(ProcessingConfig.getSetting(COMMAND_SETTING) or "")
