"""Readers for image and label volumes: headers without voxels, then voxels in bounded blocks."""

from cellcheck.sources.volume import Block, Header, Volume, open_volume

__all__ = ["Block", "Header", "Volume", "open_volume"]
