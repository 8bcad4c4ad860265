"""cellcheck: make 3D segmentation training on partially annotated FIB-SEM crops fail before submission."""

__version__ = "0.1.0"
