"""What every command (run, suite, report, training, anchors) does around its ``@hydra.main``.

* User-fixable problems (``VcmEvalError``) print as one line and exit with status 2; so do
  Hydra's own config errors (unknown key, wrong type, a value outside a choice, unknown option,
  bad override syntax), condensed from its multi-line report by ``config_error_line``. Anything
  else is a bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows Hydra's full reports.
* Command lines of the previous release keep working for one release, with a warning
  (``modernize``): ``codec=vtm`` / ``codec.preset=slow`` (the VVC group is now ``vvc``) and
  ``model.backend=detectron2`` (now ``model._target_``).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from vcm_eval.codecs.vvc.config import VvcConfig
from vcm_eval.determinism import pin_cpu_kernels
from vcm_eval.errors import VcmEvalError, one_line

DETECTRON2_MODEL = "vcm_eval.vision.detectron2_rcnn.Detectron2Rcnn"
# Settings of the VVC group (renamed from ``codec`` to ``vvc``): ``pipeline.codec`` (a researcher's codec) is not one.
_VVC_FIELDS = tuple(f.name for f in dataclasses.fields(VvcConfig))


def modernize(args: list[str]) -> tuple[list[str], list[str]]:
    """Rewrite overrides of the previous release's names; returns (new args, one warning per rewrite)."""
    out, notes = [], []
    for arg in args:
        prefix = arg[: len(arg) - len(arg.lstrip("+~"))]
        key, sep, value = arg[len(prefix) :].partition("=")
        new = arg
        if key == "codec" and sep:
            new = f"{prefix}vvc={value}"
        elif key.startswith("codec.") and key.split(".", 1)[1] in _VVC_FIELDS:
            new = f"{prefix}vvc.{key.split('.', 1)[1]}{sep}{value}"
        elif key == "model.backend" and sep:
            new = f"{prefix}model._target_={DETECTRON2_MODEL}" if value == "detectron2" else ""
        if new != arg:
            notes.append(f"{arg!r} is deprecated and will stop working in the next release; write {new or 'nothing'!r}")
        if new:
            out.append(new)
    return out, notes


def multirun_flag_first(argv: list[str]) -> list[str]:
    """Move ``-m``/``--multirun`` before the overrides: Hydra's parser rejects it after one, so
    ``python -m vcm_eval pipeline=x -m pipeline.qp=22,27`` would fail without this."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags + [a for a in argv[1:] if a not in ("-m", "--multirun")]


# Errors of the file system a user fixes by choosing another folder or freeing space.
_FS_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.ENOTDIR,
    errno.EISDIR,
}


def user_fixable(exc: OSError) -> bool:
    """A file-system error the user fixes by choosing another folder: a write refused, a full disk,
    or a folder that cannot be created (ENOENT raised by ``mkdir``, e.g. under /proc)."""
    if exc.errno in _FS_ERRNOS:
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return exc.errno == errno.ENOENT and tb is not None and tb.tb_frame.f_code.co_name == "mkdir"


def fs_error_line(exc: OSError) -> str:
    return (
        f"cannot write {exc.filename} ({exc.strerror}); choose a writable paths.results (and hydra.run.dir) "
        "with free space"
    )


def missing_launcher(argv: list[str]) -> str | None:
    """The install hint when ``hydra/launcher=slurm`` is asked for without the submitit plugin."""
    launchers = ("slurm", "submitit_slurm", "submitit_local")
    if not any(a.startswith("hydra/launcher=") and a.split("=", 1)[1] in launchers for a in argv[1:]):
        return None
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return (
            "hydra/launcher=slurm needs the submitit launcher: pip install 'vcm_eval[cluster]' "
            "(hydra-submitit-launcher)"
        )
    return None


def config_error_line(exc: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error: what is wrong, where, and the fix."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    if isinstance(exc, MissingConfigException) and exc.options:
        first = str(exc).strip().splitlines()[0]
        valid = sorted(o for o in exc.options if not o.startswith("base_"))
        return f"{first}; valid options: {', '.join(valid)}"
    if isinstance(exc, OverrideParseException):
        return f"cannot parse override {exc.override!r}: {exc.message.splitlines()[0]}; write overrides as key=value"
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key, typ = cause.full_key, getattr(cause, "object_type", None)
        what = str(getattr(cause, "msg", "") or cause).strip().splitlines()[0]
        if isinstance(cause, (ConfigKeyError, AttributeError)) and "not in" in what:
            fields = (
                [f.name for f in dataclasses.fields(typ) if not f.name.startswith("_")]
                if dataclasses.is_dataclass(typ)
                else []
            )
            listed = f"; valid keys: {', '.join(fields)}" if fields else ""
            return f"unknown config key {key!r}{listed} (check the spelling)"
        return f"bad value for {key}: {what}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    return "; ".join(lines[:3]) or type(exc).__name__


FAILED_IMAGES_EXIT = 3  # the command finished, and some image's stream did not decode
_failed_runs: list[str] = []


def note_failed_images(run_dir: object, failed: Sequence[object]) -> None:
    """Report a run's images whose stream did not decode, and make the command's exit status say so.

    The run itself is complete (each failed image is a record without detections, counted in the
    mAP and in ``metrics.json``'s ``decode_failures``); the rest of a sweep goes on, and the
    command exits with status 3 at its end (``run_command``).
    """
    if failed:
        shown = ", ".join(str(i) for i in failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        print(f"warning: {len(failed)} image(s) did not decode in {run_dir} ({shown}; the reasons are "
              "the records' decode_error); they count as images without detections", file=sys.stderr)  # fmt: skip
        _failed_runs.append(f"{run_dir}: {len(failed)}")


def guarded(work: Callable[[], object]) -> None:
    """Run a command's work; a user-fixable error becomes one line on stderr and exit status 2."""
    try:
        work()
    except VcmEvalError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # an unwritable or full paths.results met outside the project's own writers
        if not user_fixable(exc):
            raise
        print(f"error: {fs_error_line(exc)}", file=sys.stderr)
        sys.exit(2)


def run_command(main: Callable[[], None]) -> None:
    """A Hydra command with one-line errors, deprecated overrides rewritten and ``-m`` anywhere."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
    )  # compressai
    pin_cpu_kernels()  # before torch's first convolution: the same features on every AVX2 machine
    args, notes = modernize(sys.argv[1:])
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    sys.argv = multirun_flag_first([sys.argv[0], *args])
    if (hint := missing_launcher(sys.argv)) is not None:
        print(f"error: {hint}", file=sys.stderr)
        sys.exit(2)
    user_wants_full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its multi-line report
    try:
        main()
        if _failed_runs:
            runs = "; ".join(_failed_runs)
            print(f"error: images failed to decode in {len(_failed_runs)} run(s): {runs}; their results are "
                  "written, each failed image scored as one without detections", file=sys.stderr)  # fmt: skip
            sys.exit(FAILED_IMAGES_EXIT)
    except (HydraException, OmegaConfBaseException) as exc:
        if user_wants_full:
            raise
        print(f"error: {config_error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # e.g. Hydra creating its output folder under an unwritable paths.results
        if not user_fixable(exc) or user_wants_full:
            raise
        print(f"error: {fs_error_line(exc)}", file=sys.stderr)
        sys.exit(2)
