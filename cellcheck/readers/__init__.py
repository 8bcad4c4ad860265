"""Readers for image and label volumes: headers without voxels, then voxels in bounded blocks."""

from cellcheck.readers.open import open_volume
from cellcheck.readers.volume import Block, Header, ReadError, Volume

__all__ = ["Block", "Header", "ReadError", "Volume", "open_volume"]
