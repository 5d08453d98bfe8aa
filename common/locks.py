"""One writer per folder, and files that are either whole or absent.

`lock_folder` takes an exclusive `fcntl.flock` on `<folder>/.kfnet.lock` (the OS drops it when the
process dies, however it dies) and writes the holder's PID into it, so that a second process can
say who holds the folder. A process keeps its locks until `release_all` (called by
`common.cli.run` when a command ends) or its exit.

`atomic_write` writes to a temporary name, fsyncs and renames: a full disk, an I/O error or a
read-only folder (ENOSPC, EIO, EROFS, ...) leaves the previous file under the final name, or
none, never a torn one, and becomes one `OutputError` naming the file and the reason.
"""

import fcntl
import os
from pathlib import Path

from common.errors import InputError, OutputError

LOCK_NAME = ".kfnet.lock"

_held = {}  # resolved folder → FolderLock


class FolderLock:
    """An exclusive lock on one folder, held through an open file descriptor."""

    def __init__(self, folder, fd, created):
        self.folder, self.fd, self.created = folder, fd, created

    def release(self):
        """Unlocks and removes the lock file; a folder the lock created and left empty goes too."""
        if self.fd is None:
            return
        # Removed while still locked: a process that opened the old file sees it is stale.
        (self.folder / LOCK_NAME).unlink(missing_ok=True)
        if self.created:
            try:
                self.folder.rmdir()  # only if empty
            except OSError:
                pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
        _held.pop(self.folder, None)


def holder_pid(folder):
    """PID written into a folder's lock file, or None."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def lock_folder(folder, flag):
    """Locks `folder` for this process (creating it), or raises InputError naming the holder.

    Re-entrant within one process. `flag` names the command-line flag in the message.
    """
    folder = Path(folder).resolve()
    if folder in _held:
        return _held[folder]
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {folder} is a file, not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {flag} {folder}: {e.strerror}") from None
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"cannot create the lock file {path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder_pid(folder)
            who = f"process {pid}" if pid else "another process"
            raise InputError(f"{flag} {folder} is in use by {who} (lock {LOCK_NAME}); "
                             f"wait for it to finish or use another folder") from None
        # The holder may have removed the file between our open and our lock: retry on a fresh one.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    lock = FolderLock(folder, fd, created)
    _held[folder] = lock
    return lock


def release_all():
    """Releases every lock this process holds."""
    for lock in list(_held.values()):
        lock.release()


def reason(error):
    """Short text of an OSError (or a TensorFlow error) for a one-line message."""
    if isinstance(error, OSError) and error.errno is not None:
        return os.strerror(error.errno)
    text = getattr(error, "message", None) or str(error)
    return text.splitlines()[0] if text else type(error).__name__


def output_error(path, error):
    """OutputError "cannot write PATH: reason"."""
    return OutputError(f"cannot write {path}: {reason(error)}")


def temporary_name(path):
    return Path(path).with_name(Path(path).name + ".tmp")


def atomic_write(path, write, binary=True):
    """write(file object) into `path` through a temporary file, fsync and rename.

    On any OSError the temporary file is removed and OutputError names `path` and the reason;
    whatever was under `path` before is untouched.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise output_error(path, e) from None


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_write_texts(texts):
    """Writes {path: text} all or nothing: every file to a temporary name first, then the renames."""
    temps = {}
    try:
        for path, text in texts.items():
            temps[path] = temporary_name(path)
            try:
                with open(temps[path], "w") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise output_error(path, e) from None
        for path, tmp in temps.items():
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise output_error(path, e) from None
    finally:
        for tmp in temps.values():
            try:
                Path(tmp).unlink(missing_ok=True)
            except OSError:
                pass

