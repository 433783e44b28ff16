"""The depth stage: the plane of the surface as a homography."""
