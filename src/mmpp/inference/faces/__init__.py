"""Face finding (`detect`), the "two people" rule (`people`) and the upright crop (`align`)."""

from mmpp.inference.faces.align import Landmarks, aligned_square, leveling_turn
from mmpp.inference.faces.detect import Box, Face, detect_faces
from mmpp.inference.faces.people import member_face, other_people

__all__ = ["Box", "Face", "Landmarks", "aligned_square", "detect_faces", "leveling_turn", "member_face", "other_people"]
