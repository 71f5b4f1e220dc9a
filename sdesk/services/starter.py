"""The example files sdesk ships (examples/ of a checkout, or the copy inside the wheel), and
`sdesk init --example DIR`: a commented starter desk config to edit."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import BadInput, Conflict, SdeskError


def examples_dir() -> Path:
    """examples/ of a source checkout, or the copy shipped inside the wheel (sdesk/_examples)."""
    from importlib.resources import files

    here = Path(str(files("sdesk")))
    for candidate in (here / "_examples", here.parent / "examples"):
        if candidate.is_dir():
            return candidate
    raise SdeskError("the example files (examples/) are not installed with sdesk; reinstall it")


def write_starter(dest: Path) -> list[str]:
    """Copy examples/desk to `dest` (a new or empty folder, or a symbolic link to one: the files
    go where it points) and return the files written. Built beside it and renamed into place,
    so `dest` is whole or as it was; a folder with anything in it is refused, never merged into
    or overwritten. A path the system refuses (a name too long, under a file, a loop of links)
    is one line, and nothing is made."""
    import stat

    from ..files import kind, make_folders, reason, remove_folders, status

    found = status(dest)
    if found is None and os.path.islink(dest):
        raise Conflict(f"{dest} is a symbolic link to {os.readlink(dest)}, which does not exist: make that folder, "
                       "or name another (nothing was changed)")
    if found is not None and not stat.S_ISDIR(found.st_mode):
        raise Conflict(f"{dest} is {kind(found.st_mode)}: the starter config is a folder (nothing was changed)")
    if found is not None and any(os.scandir(dest)):
        raise Conflict(f"{dest} is not empty: the starter config is written only to a new or empty folder "
                       "(nothing was changed)")
    target = Path(os.path.realpath(dest)) if os.path.islink(dest) else dest  # renamed onto: not the link itself
    source = examples_dir() / "desk"
    made = make_folders(target.parent, dest)
    build = None
    try:
        build = Path(tempfile.mkdtemp(prefix=".sdesk-starter.", dir=target.parent))
        shutil.copytree(source, build, dirs_exist_ok=True, copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("__pycache__", ".*"))
        build.chmod(0o755)  # mkdtemp makes it private; a config folder is the team's, like the clone it came from
        try:
            os.rename(build, target)  # onto a missing or an empty folder: atomic
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise Conflict(f"{dest} changed while the starter config was written (nothing was changed)") from None
            raise
    except BaseException as e:
        if build is not None:
            shutil.rmtree(build, ignore_errors=True)
        remove_folders(made)
        if isinstance(e, OSError):
            raise BadInput(f"{dest}: {reason(e)}") from None
        raise
    return sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())


# The files sdesk reads from the config folder (cmdb.yaml is read by `sdesk cmdb import` only).
DESK_FILES = ("intake", "oncall", "sla", "triage", "metrics", "roles", "notify", "catalog")
OTHER_FILES = frozenset({"cmdb.yaml", "cmdb.yml"})


def config_files(folder: Path) -> tuple[list[str], list[str]]:
    """The desk files in a config folder (oncall.yaml, ..., runbooks/) and the YAML files sdesk
    would never read there, by the names `sdesk doctor` knows: a misspelt one (oncal.yaml, the
    wrong suffix oncall.yml, SLA.yaml) is a file someone meant to be read."""
    names = sorted(entry.name for entry in os.scandir(folder))
    found = [n for n in names if n.endswith(".yaml") and n[:-5] in DESK_FILES]
    found += ["runbooks/"] if os.path.isdir(folder / "runbooks") else []
    unknown = [n for n in names if n.lower().endswith((".yaml", ".yml")) and n not in found and n not in OTHER_FILES]
    return found, unknown


def meant(name: str) -> str:
    """The desk file a look-alike name was probably meant to be (`SLA.yml` -> sla.yaml), or ''."""
    stem = name.rsplit(".", 1)[0].lower()
    return f"{stem}.yaml" if stem in DESK_FILES else ""
