"""Geometry floor: the chip grid and pixel-space conversions. Pure code, no pixel I/O, no torch."""
