"""MMPP — Make My Profile Photo: the application shell (settings, logging, command line)."""

import logging

__version__ = "0.1.0"

# bitsandbytes (the `train` extra, which diffusers imports when it is installed) warns at import on
# CPUs with AVX512-BF16 that an optional 4-bit kernel, a hub download, is missing. MMPP never uses
# 4-bit layers, and the stray stderr line would break every command's one-line error.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
