"""MMPP — Make My Profile Photo: the application shell (settings, logging, command line)."""

__version__ = "0.1.0"

