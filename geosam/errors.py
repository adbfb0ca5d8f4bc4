"""One error hierarchy: every geosam error is a `GeosamError` and also the built-in it resembles.

Callers can catch `GeosamError` for everything geosam raises on purpose, or the built-in
(`ValueError`, `FileNotFoundError`, `OSError`) where that reads better. Messages are short
facts that name the file, the bad value and the fix; the CLI prints them as one line.
"""


class GeosamError(Exception):
    """Root of all errors geosam raises on purpose."""


class InputNotFoundError(GeosamError, FileNotFoundError):
    """A scene, label file, checkpoint or other input does not exist."""


class SceneError(GeosamError, ValueError):
    """A raster scene cannot be used: unreadable, no CRS, no or rotated geotransform."""


class BandError(GeosamError, ValueError):
    """Band selection or band mapping does not fit the scene."""


class LabelsError(GeosamError, ValueError):
    """Ship footprints cannot be used: no CRS, wrong geometry type, empty, unknown layer."""


class GridError(GeosamError, ValueError):
    """Chip grid parameters are inconsistent (e.g. overlap >= chip size)."""


class OutputExistsError(GeosamError, FileExistsError):
    """An output already exists and would be overwritten without `--overwrite`."""


class OutputWriteError(GeosamError, OSError):
    """An output could not be written (disk full, permission denied)."""


class DeviceError(GeosamError, ValueError):
    """The requested compute device is not available."""


class TrainingDataError(GeosamError, ValueError):
    """The footprints give nothing to train on."""


class ModelError(GeosamError, ValueError):
    """A model type is not in the registry."""


class CheckpointError(GeosamError, ValueError):
    """A checkpoint is missing, unreadable, not a SAM state_dict, or of another model type."""


class DownloadError(GeosamError, OSError):
    """Official weights could not be downloaded or failed their checksum."""


class OutputFormatError(GeosamError, ValueError):
    """An output's extension names no supported format, or the format cannot hold the data."""


class DaskMissingError(GeosamError, ImportError):
    """A Dask cluster was asked for, but dask.distributed is not installed."""


class ClusterError(GeosamError, RuntimeError):
    """The Dask cluster cannot run the detection: bad options, no scheduler, dying workers."""


class ResumeError(GeosamError, ValueError):
    """A run cannot be continued as asked (a setting that cannot change, a shorter total)."""
