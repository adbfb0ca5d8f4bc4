"""How chip GeoTIFFs are laid out: 3-band uint8, pixel-interleaved, tiled, compressed by name."""

from __future__ import annotations

CODECS: dict[str, dict[str, object]] = {
    "deflate": {"compress": "deflate", "predictor": 2, "zlevel": 1},
    "zstd": {"compress": "zstd", "predictor": 2, "zstd_level": 1},
    "lzw": {"compress": "lzw", "predictor": 2},
    "none": {},
}
"""Chip compression by name. The default is DEFLATE, which every GIS reads, with a horizontal
predictor at the fastest level: on chips of the real dev scenes GDAL wrote it 2-4x faster
than DEFLATE's default level 6 and the files come out about 10 % smaller (the predictor gains
more than the level loses); geosam now compresses it itself (`BLOCKS_BY_GEOSAM`), twice as
fast again. ZSTD (level 1, with the predictor) needs GDAL 2.3+ (QGIS 3.22 has it) and
writes about as fast; LZW (with the predictor) is the classic alternative for older readers,
about 2x slower to write and no smaller; `none` writes raw pixels. All are lossless: the
pixels are the same whatever the codec."""
DEFAULT_CODEC = "deflate"
BLOCKS_BY_GEOSAM = "deflate"
"""The codec whose tiled chips geosam compresses block by block itself, with ISA-L
(`geosam.io.deflate_blocks`): half GDAL's CPU for files of the same size, and blocks that
overlapping chips share are compressed once (`geosam.io.shared_blocks`). GDAL writes the
chips of the other codecs, and chips too small to be tiled, whole."""
CHIP_BLOCK = 128
"""Chip files are tiled in 128 px blocks (48 KB of RGB pixels). geosam's DEFLATE (ISA-L)
compresses them a fifth faster than 64 px blocks and about as fast as 256 px ones, the files
come out a little smaller, and with the default 128 px overlap a chip's first block row and
column hold the same pixels as its neighbours' last, so they are compressed once
(`geosam.io.shared_blocks`). GDAL's ZSTD, LZW and raw chips write as fast as with 64 px
blocks (bench/RESULTS.md, section 1, twenty-ninth session)."""


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


def blocks_by_geosam(profile: dict[str, object]) -> bool:
    """Whether geosam compresses the blocks of a chip with this profile (else GDAL does).

    geosam's blocks carry the horizontal predictor (`geosam.io.deflate_blocks`): a profile
    without it is left to GDAL.
    """
    return (
        profile.get("compress") == BLOCKS_BY_GEOSAM
        and bool(profile.get("tiled"))
        and profile.get("predictor") == 2
    )
