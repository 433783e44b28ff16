"""The projection stage: the material mapped onto the surface, the original light kept."""
