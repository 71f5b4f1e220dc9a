"""The example files sdesk ships (examples/ of a checkout, or the copy inside the wheel), and
`sdesk init --example DIR`: a commented starter desk config to edit."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import Conflict, SdeskError


def examples_dir() -> Path:
    """examples/ of a source checkout, or the copy shipped inside the wheel (sdesk/_examples)."""
    from importlib.resources import files

    here = Path(str(files("sdesk")))
    for candidate in (here / "_examples", here.parent / "examples"):
        if candidate.is_dir():
            return candidate
    raise SdeskError("the example files (examples/) are not installed with sdesk; reinstall it")


def write_starter(dest: Path) -> list[str]:
    """Copy examples/desk to `dest` (a new or empty folder) and return the files written. Built
    beside it and renamed into place, so `dest` is whole or as it was; a folder with anything
    in it is refused, never merged into or overwritten."""
    if dest.is_dir() and any(dest.iterdir()):
        raise Conflict(f"{dest} is not empty: the starter config is written only to a new or empty folder "
                       "(nothing was changed)")
    if dest.exists() and not dest.is_dir():
        raise Conflict(f"{dest} is a file: the starter config is a folder (nothing was changed)")
    source = examples_dir() / "desk"
    dest.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(source, build, dirs_exist_ok=True, copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("__pycache__", ".*"))
        build.chmod(0o755)  # mkdtemp makes it private; a config folder is the team's, like the clone it came from
        try:
            os.rename(build, dest)  # onto a missing or an empty folder: atomic
        except OSError:
            raise Conflict(f"{dest} changed while the starter config was written (nothing was changed)") from None
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
