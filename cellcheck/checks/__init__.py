"""Checks, one module per family; each function takes what was read and yields Findings."""
