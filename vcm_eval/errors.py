"""The one exception type the project raises for problems a user can fix.

Every message names the bad value and says how to fix it; the CLI prints it as one line and
exits non-zero (see ``vcm_eval.__main__``).
"""

from __future__ import annotations


class VcmEvalError(Exception):
    """A user-fixable problem: bad input, bad configuration, a missing tool."""


class ConfigError(VcmEvalError):
    """A configuration value is out of range or inconsistent."""


class DataError(VcmEvalError):
    """A dataset root, image or annotation file is missing or unreadable."""


class CodecError(VcmEvalError):
    """An encoder/decoder failed, is missing, or a bitstream is corrupt."""


class CheckpointError(VcmEvalError):
    """A checkpoint is missing, corrupt, or does not match the configured architecture."""
