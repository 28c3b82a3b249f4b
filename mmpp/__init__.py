"""MMPP — Make My Profile Photo: the application shell (settings, logging, command line)."""

__version__ = "0.1.0"

# bitsandbytes (an optional `mmpp train` extra that diffusers and peft import whenever it is
# installed) warns at import on CPUs with AVX-512 BF16 that a kernel from the hub is missing. It is
# only used by `--optimizer adamw8bit`, which works without that kernel, so the line would be noise
# in front of every command's output, before our logging is even configured.
import logging as _logging

_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)
