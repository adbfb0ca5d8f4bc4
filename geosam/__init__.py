"""geosam: teach Segment Anything to find ships in georeferenced scenes."""

__version__ = "0.1.0"
