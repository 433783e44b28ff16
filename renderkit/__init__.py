"""Shared building blocks of the render pipeline: serving, imaging, storage, geometry, Triton."""
