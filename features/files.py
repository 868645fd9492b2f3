"""Writing files atomically: a reader sees the old file or the new one, never half of one,
and a failure leaves nothing behind. The one home for it: exports, campaign lists, cohort
tables and plots, the synthetic shop, the report and the service's context file."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

# the formats of tables the commands write (`--out x.csv` / `--out x.parquet`)
TABLE_FORMATS = (".csv", ".parquet")


class OutputPathError(ValueError):
    """An output path that cannot be written: a folder, under a file, or of another format."""


def check_output_path(path: Path, formats: tuple[str, ...] = ()) -> Path:
    """The path, refused by name if it is a folder, lies under a file, or (with `formats`,
    e.g. (".csv", ".parquet")) does not end in one of them. Checked before a command does
    its work, so a bad --out costs no time and leaves nothing behind."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path} is a folder; give a file name in it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{path}: {parent} is a file, not a folder")
            break
    if formats and path.suffix.lower() not in formats:
        raise OutputPathError(f"{path}: name the file with {' or '.join(formats)} (the format)")
    return path


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(staging)` on a staging file in the same folder, then rename it into place.

    Readers see the old file or the new one, never half a file, and a failure leaves no
    staging file behind. The staging file is created by `write` itself (not by mkstemp,
    whose 0600 would stick), so the file gets the mode any new file gets under the umask:
    these files are handed to people and other services.
    """
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        write(staging)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


def write_atomic_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a CSV atomically (`write_atomic`)."""
    return write_atomic(path, lambda staging: frame.to_csv(staging, index=False))


def write_atomic_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table atomically as CSV or Parquet, as the file name's suffix says."""
    suffix = check_output_path(path, TABLE_FORMATS).suffix.lower()
    if suffix == ".parquet":
        return write_atomic(path, lambda staging: frame.to_parquet(staging, index=False))
    return write_atomic_csv(frame, path)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (another user's counts as running; a zombie,
    killed but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


@contextlib.contextmanager
def scratch_folder(root: Path, kind: str) -> Iterator[Path]:
    """A working folder `<root>/.<kind>-<pid>`, removed on exit. A killed process cannot
    remove its own, so the folders of `kind` whose process is gone are removed first: the
    project's scratch stays under its own paths, never in the machine's temp folder."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in root.glob(f".{kind}-*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    folder = root / f".{kind}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)  # this process's, from an earlier run
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
