"""Files written whole or not at all: beside their name, then renamed over it."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BadInput


@contextmanager
def replaced(target: Path) -> Iterator[Path]:
    """A new empty file beside `target`, to write; renamed over `target` when the block ends
    well, removed otherwise. A reader (node_exporter, a restore) never sees half a file and a
    failed write leaves none. Readable as a file the user makes would be (umask); only over a
    regular file."""
    if target.is_symlink() or target.exists() and not target.is_file():
        raise BadInput(f"cannot write {target}: not a regular file")
    tmp = None
    try:
        fd, name = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.")
        os.close(fd)
        tmp = Path(name)
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as e:
        raise BadInput(f"cannot write {target}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
