"""The CellMap core: stores, their OME-NGFF pyramids, crops paired with raw by voxel size, crops read at a resolution.

Torch-free, and below every user of it: the audit, convert, the conversion check, statistics and
the trainer's store loader read CellMap data only through these modules:

- `stores`: find stores, open one (raw pyramid, crops, class arrays and their encodings), no voxels;
- `pairing`, `trainable`: crop levels paired with raw levels by physical voxel size, and the
  resolutions a crop can train at (with the reasons it cannot: resolution-mismatch, off-grid);
- `geometry`, `encoding`: the grid a crop's arrays share, the values an array may hold;
- `plan`, `render`: how one crop is read at one resolution, and the reading itself, box by box;
- `locate`: where a copy of a crop's voxels really comes from.
"""
