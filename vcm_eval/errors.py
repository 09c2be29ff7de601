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


def one_line(text: str) -> str:
    """``text`` with its lines and runs of spaces folded into one line (the CLI prints one line)."""
    return " ".join(text.split())


def load_failure(exc: BaseException) -> str:
    """The informative part of a ``torch.load(weights_only=True)`` failure, on one line.

    torch wraps the unpickler's reason ("Unsupported operand 110", "invalid load key") in six lines
    about the ``weights_only`` default; only the reason helps the user.
    """
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = next((ln for ln in text.split("WeightsUnpickler error:", 1)[1].splitlines() if ln.strip()), text)
    return one_line(text) or type(exc).__name__
