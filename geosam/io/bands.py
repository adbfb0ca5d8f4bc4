"""Which scene bands become the chip's red, green and blue.

SAM takes three channels. By default geosam uses the bands whose colour interpretation says
red, green and blue, else the first three; a single band is repeated to three. Users pick
others with `--bands` (1-based, like GDAL and rasterio).
"""

from __future__ import annotations

from collections.abc import Sequence

from rasterio.enums import ColorInterp
from rasterio.io import DatasetReader

from geosam.errors import BandError


def default_bands(src: DatasetReader) -> tuple[int, int, int]:
    """Red, green, blue by colour interpretation, else bands 1-3, else band 1 three times."""
    interp = list(src.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in wanted):
        r, g, b = (interp.index(c) + 1 for c in wanted)
        return r, g, b
    if src.count >= 3:
        return 1, 2, 3
    return 1, 1, 1


def resolve_bands(src: DatasetReader, bands: Sequence[int] | None) -> tuple[int, int, int]:
    """Validate a 1-based band selection of one or three bands against `src`."""
    if bands is None or len(bands) == 0:
        return default_bands(src)
    if len(bands) not in (1, 3):
        raise BandError(
            f"--bands {','.join(map(str, bands))}: give one band (repeated to three) or three "
            "bands, e.g. --bands 4,3,2"
        )
    bad = [b for b in bands if not 1 <= b <= src.count]
    if bad:
        example = "1" if src.count < 3 else "1,2,3"
        raise BandError(
            f"{src.name}: band {bad[0]} is out of range; the scene has bands 1-{src.count}: "
            f"choose bands it has with --bands, e.g. --bands {example}"
        )
    red, green, blue = three_bands(bands)
    return red, green, blue


def three_bands(bands: Sequence[int]) -> tuple[int, ...]:
    """A selection as R, G, B: one band is repeated to three, three are kept."""
    return tuple(bands) * 3 if len(bands) == 1 else tuple(bands)


def parse_bands(text: str) -> tuple[int, ...]:
    """Parse ``"4,3,2"`` into (4, 3, 2)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise BandError(f"--bands {text!r}: expected 1-based band numbers like 4,3,2") from exc
