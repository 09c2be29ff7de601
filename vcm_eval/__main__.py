"""Entry point: ``python -m vcm_eval [pipeline=<name>] [key=value ...] [-m sweeps]``.

A thin wrapper around ``run``: user-fixable problems (``VcmEvalError``) print as one line and
exit with status 2; so do Hydra's own config errors (unknown key, wrong type, unknown option,
bad override syntax), condensed from its multi-line report by ``config_error_line``. Anything
else is a bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows Hydra's full reports.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from vcm_eval import config as _config  # noqa: F401 - registers the config schemas
from vcm_eval.errors import VcmEvalError, one_line
from vcm_eval.resources import CONF_DIR


def run(cfg: DictConfig, *, base_overrides: list[str] | None = None) -> object:
    """One run, a suite of runs (``pipeline=suite``), or a report of finished runs (``report=...``)."""
    if cfg.get("report") is not None:
        from vcm_eval.report.report import run_report

        result = run_report(cfg)
        print(result.text)
        for path in result.incomplete:
            print(f"not finished (rerun its command to resume): {path}")
        print("wrote: " + ", ".join(str(p) for p in result.files))
        return result
    if cfg.pipeline.name == "suite":
        from vcm_eval.engine.suite import run_suite

        return run_suite(cfg, base_overrides=base_overrides or [])
    from vcm_eval.engine.run import run_single

    row = run_single(cfg)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return row


def multirun_flag_first(argv: list[str]) -> list[str]:
    """Move ``-m``/``--multirun`` before the overrides: Hydra's parser rejects it after one, so
    ``python -m vcm_eval pipeline=x -m pipeline.qp=22,27`` would fail without this."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags + [a for a in argv[1:] if a not in ("-m", "--multirun")]


# Errors of the file system a user fixes by choosing another folder or freeing space.
_FS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOTDIR, errno.EISDIR}


def _user_fixable(exc: OSError) -> bool:
    """A file-system error the user fixes by choosing another folder: a write refused, a full disk,
    or a folder that cannot be created (ENOENT raised by ``mkdir``, e.g. under /proc)."""
    if exc.errno in _FS_ERRNOS:
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return exc.errno == errno.ENOENT and tb is not None and tb.tb_frame.f_code.co_name == "mkdir"


def fs_error_line(exc: OSError) -> str:
    return f"cannot write {exc.filename} ({exc.strerror}); choose a writable paths.results (and hydra.run.dir) with free space"


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg, base_overrides=list(HydraConfig.get().overrides.task))
    except VcmEvalError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # an unwritable or full paths.results met outside the project's own writers
        if not _user_fixable(exc):
            raise
        print(f"error: {fs_error_line(exc)}", file=sys.stderr)
        sys.exit(2)


def missing_launcher(argv: list[str]) -> str | None:
    """The install hint when ``hydra/launcher=slurm`` is asked for without the submitit plugin."""
    wants = any(a.startswith("hydra/launcher=") and a.split("=", 1)[1] in ("slurm", "submitit_slurm", "submitit_local") for a in argv[1:])
    if not wants:
        return None
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra/launcher=slurm needs the submitit launcher: pip install 'vcm_eval[cluster]' (hydra-submitit-launcher)"
    return None


def config_error_line(exc: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error: what is wrong, where, and the fix."""
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
            fields = [f.name for f in dataclasses.fields(typ)] if typ is not None and dataclasses.is_dataclass(typ) else []
            listed = f"; valid keys: {', '.join(fields)}" if fields else ""
            return f"unknown config key {key!r}{listed} (check the spelling)"
        return f"bad value for {key}: {what}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    return "; ".join(lines[:3]) or type(exc).__name__


def cli() -> None:
    """``python -m vcm_eval``: Hydra's ``main`` with every user error reported on one line."""
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)  # raised inside compressai
    sys.argv = multirun_flag_first(sys.argv)
    if (hint := missing_launcher(sys.argv)) is not None:
        print(f"error: {hint}", file=sys.stderr)
        sys.exit(2)
    user_wants_full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its multi-line report
    try:
        main()
    except (HydraException, OmegaConfBaseException) as exc:
        if user_wants_full:
            raise
        print(f"error: {config_error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # e.g. Hydra creating its output folder under an unwritable paths.results
        if not _user_fixable(exc) or user_wants_full:
            raise
        print(f"error: {fs_error_line(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
