"""feedmyfurbabies gateway: a journal-first edge daemon for a home cat feeder."""

__version__ = "0.1.0"
