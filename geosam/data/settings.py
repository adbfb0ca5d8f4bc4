"""The settings that decide what a chip looks like, recorded with every output.

Tiling, fine-tuning and detection must see identical pixels, so these travel together: into
the tile metadata and into the model checkpoint, from which `detect` takes them back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from geosam.data.labels import DEFAULT_MIN_VISIBLE
from geosam.geometry.grid import DEFAULT_CHIP_SIZE, DEFAULT_OVERLAP, check_grid
from geosam.io.stretch import DEFAULT_PERCENTILES, Stretch


@dataclass(frozen=True)
class ChipSettings:
    """How scenes become chips.

    Attributes:
        size: chip edge in pixels (the encoder's input size).
        overlap: pixels shared by neighbouring chips; keep it above the longest ship in pixels.
        bands: 1-based scene bands for R, G, B; None picks by colour interpretation.
        nodata: nodata value; None uses the scene's own.
        gsd: resample on read to this ground sample distance in metres, in any CRS
            (`geosam.data.scale.resolution_for_gsd`).
        stretch: a recorded stretch; None estimates one per scene for non-uint8 data.
        percentiles: low and high percentiles of an estimated stretch.
        per_band_stretch: estimate each band's percentiles on its own instead of one pair for
            all bands (`geosam.io.stretch`); records made before the setting existed read
            as True, as they were made.
        min_visible: drop a ship cut by a chip edge when less of its area than this is on the chip.
        scale_rule: (ground pixel size in metres, read factor) of each training sensor;
            with no `gsd`, a scene is read at the ground pixel size of the nearest entry
            (`geosam.data.scale`). Empty: scenes are read as they are.
    """

    size: int = DEFAULT_CHIP_SIZE
    overlap: int = DEFAULT_OVERLAP
    bands: tuple[int, ...] | None = None
    nodata: float | None = None
    gsd: float | None = None
    stretch: Stretch | None = None
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    per_band_stretch: bool = False
    min_visible: float = DEFAULT_MIN_VISIBLE
    scale_rule: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        check_grid(self.size, self.overlap)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["stretch"] = self.stretch.to_dict() if self.stretch is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChipSettings:
        """Inverse of `to_dict`."""
        stretch = Stretch.from_dict(data["stretch"]) if data.get("stretch") else None
        bands = tuple(data["bands"]) if data.get("bands") else None
        return cls(
            size=int(data["size"]),
            overlap=int(data["overlap"]),
            bands=bands,
            nodata=data.get("nodata"),
            gsd=data.get("gsd"),
            stretch=stretch,
            percentiles=tuple(data.get("percentiles", DEFAULT_PERCENTILES)),  # type: ignore[arg-type]
            per_band_stretch=bool(data.get("per_band_stretch", True)),
            min_visible=float(data.get("min_visible", DEFAULT_MIN_VISIBLE)),
            scale_rule=tuple((float(r), float(f)) for r, f in data.get("scale_rule", ())),
        )
