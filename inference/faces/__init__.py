"""Face finding (`detect`), the "two people" rule (`people`) and the upright crop (`align`)."""

from inference.faces.align import Landmarks, aligned_square, leveling_turn
from inference.faces.detect import Box, Face, detect_faces
from inference.faces.people import member_face, other_people

__all__ = ["Box", "Face", "Landmarks", "aligned_square", "detect_faces", "leveling_turn", "member_face", "other_people"]
