"""How chip GeoTIFFs are laid out: 3-band uint8, pixel-interleaved, tiled, compressed by name."""

from __future__ import annotations

CODECS: dict[str, dict[str, object]] = {
    "deflate": {"compress": "deflate", "predictor": 2, "zlevel": 1},
    "zstd": {"compress": "zstd", "predictor": 2, "zstd_level": 1},
    "lzw": {"compress": "lzw", "predictor": 2},
    "none": {},
}
"""Chip compression by name. The default is DEFLATE, which every GIS reads, with a horizontal
predictor at level 1: on chips of the real dev scenes it writes 2-4x faster than DEFLATE's
default level 6 and the files come out about 10 % smaller (the predictor gains more than the
level loses). ZSTD (level 1, with the predictor) writes faster still and needs GDAL 2.3+
(QGIS 3.22 has it); LZW (with the predictor) is the classic alternative for older readers,
1.7-2.3x slower to write than DEFLATE on real and synthetic chips and no smaller; `none`
writes raw pixels. All are lossless: the pixels are the same whatever the codec."""
DEFAULT_CODEC = "deflate"
CHIP_BLOCK = 64
"""Chip files are tiled in 64 px blocks (12 KB of RGB pixels). libdeflate compresses blocks
that small about twice as fast per byte as 256 px ones (196 KB), and the files grow by about
2 % on the real dev scenes; on the tiling benchmark's scene the chip files took a quarter less
CPU (bench/RESULTS.md, section 1, thirteenth session)."""


def chip_profile(bands: int, height: int, width: int, codec: str) -> dict[str, object]:
    """GDAL creation options of a (bands, height, width) uint8 chip, without georeference."""
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": "uint8",
        "photometric": "RGB" if bands == 3 else "MINISBLACK",
        "interleave": "pixel",
        **CODECS[codec],
    }
    if min(width, height) >= CHIP_BLOCK:
        profile.update(tiled=True, blockxsize=CHIP_BLOCK, blockysize=CHIP_BLOCK)
    return profile
