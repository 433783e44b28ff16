"""The segmentation stage: the soft mask of the surface to re-cover."""
