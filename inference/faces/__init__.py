"""Face finding (`detect`), the "two people" rule (`people`) and the upright crop (`align`)."""

from inference.faces.align import CROP_MARGIN, aligned_square
from inference.faces.detect import Box, Face, detect_faces
from inference.faces.people import other_people

__all__ = ["CROP_MARGIN", "Box", "Face", "aligned_square", "detect_faces", "other_people"]
