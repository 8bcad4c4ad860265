"""Memory prediction: Auto3DSeg's auto-scaling rules, cellcheck's own VRAM and RAM models, GPU profiles, a profiler.

Importing this package does not import torch; only the VRAM model and the profiler's callers need it.
"""
