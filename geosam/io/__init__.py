"""I/O floor: scenes, band stretch, vector footprints, chip and label files, atomic writes."""
