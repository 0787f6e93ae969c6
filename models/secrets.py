"""Keeping camera credentials out of everything a person or a log can read.

Camera URLs carry secrets (``rtsp://admin:pass@host/...``, ``?token=...``); every part that names a URL
in a log line, an error message or an API answer passes it through :func:`redact_url` first.

Secrets kept in files: a private directory (0700), files readable by their owner only (0600), and a
secret created once with random content in a file of its own, read back by every later start and by
every process that shares the directory (the JWT signing key, the camera-credentials key). The file is
created atomically: written to a private temporary file, then hard-linked into place, so two processes
starting at once agree on one value and nobody reads a half-written file.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from secrets import token_hex, token_urlsafe
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from models.errors import ConfigError

# Query keys that vendors use for secrets (Hikvision/Dahua style "?user=..&password=..", tokens).
_SECRET_KEYS = re.compile(r"(pass|pwd|secret|token|key|auth|sig|user|login|cred|session)", re.IGNORECASE)
USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact_url(url: str) -> str:
    """``url`` with its user:password and secret-looking query values replaced by ``***``:
    ``rtsp://admin:pw@host/live?token=x&ch=1`` → ``rtsp://***@host/live?token=***&ch=1``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return USERINFO.sub("***@", url)
    if not parts.scheme or not parts.netloc:
        return USERINFO.sub("***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = [(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 when it does not exist, and take group/other access off it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)


#: group and others may do nothing with a secret file or the directory GridPatrol creates for it
_PRIVATE_FILE = 0o600
_PRIVATE_DIR = 0o700


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing directory is left as it is."""
    if not path.is_dir():
        path.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
        os.chmod(path, _PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    return path


def load_or_create_secret_file(path: Path, *, nbytes: int = 48, what: str = "secret") -> str:
    """The secret stored in ``path``; on first use a new random one (``nbytes`` of entropy, URL-safe
    text) is created there with mode 0600, its directory with 0700 when it has to be created.
    A file that others may read, that is not a regular file or that is empty is a :class:`ConfigError`
    naming the file and the fix."""
    ensure_private_dir(path.parent)
    try:
        return _read(path, what=what)
    except FileNotFoundError:
        pass
    value = token_urlsafe(nbytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _PRIVATE_FILE)
        try:
            os.link(tmp, path)  # atomic, and fails when another process was first
        except FileExistsError:
            return _read(path, what=what)
    finally:
        tmp.unlink(missing_ok=True)
    return value


def _read(path: Path, *, what: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as err:  # ELOOP: a symbolic link, which someone else could point anywhere
        raise ConfigError(f"{what} file {path} cannot be read ({err.strerror}): replace it with a regular file") from err
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} file {path} is not a regular file: remove it and start again")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"{what} file {path} may be read by others (mode {stat.S_IMODE(info.st_mode):04o}): "
                f"run `chmod 600 {path}`, and replace the {what} if others may have read it"
            )
        value = f.read().strip()
    if not value:
        raise ConfigError(f"{what} file {path} is empty: remove it to have a new one generated")
    return value
