"""Package data: CellMap class tables."""
