"""MMPP — Make My Profile Photo: the application shell (settings, logging, command line)."""

__version__ = "0.2.0"

