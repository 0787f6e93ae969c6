"""Camera credentials at rest: stream URLs and ONVIF passwords encrypted with a key kept off the database.

A stored secret reads ``gpenc:v1:<key id>:<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>``. The key id
(a hash of the key) tells keys apart during a rotation; the column name is authenticated with the value,
so a ciphertext moved to another column, edited or made under another key is refused, never misread.
The key comes from ``GRIDPATROL_CREDENTIALS_KEY`` or a key file (default ``<data dir>/credentials.key``,
mode 0600) created on first use. Values without the prefix are legacy plain text: they still work and
:func:`seal_cameras` encrypts them (workers do it at start, ``gridpatrol secrets encrypt-credentials`` too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Camera
from models.errors import CameraError, ConfigError
from models.secrets import load_or_create_secret_file
from models.settings import PartSettings

logger = logging.getLogger(__name__)

ENCRYPTED_PREFIX = "gpenc:"
_V1 = "gpenc:v1:"
KEY_FILE_NAME = "credentials.key"
ENV_KEY = "GRIDPATROL_CREDENTIALS_KEY"
#: the camera columns that hold secrets, encrypted as a whole
SECRET_FIELDS = ("url", "sub_url", "onvif_url", "onvif_password")
_NONCE = 12


class CredentialsSettings(PartSettings):
    credentials_key: SecretStr | None = Field(
        default=None,
        description="Key(s) for camera credentials, base64url of 32 bytes; comma-separated: the first encrypts, "
        "all decrypt (rotation). Unset: the key file. Every process that reads or writes cameras needs the same key",
    )
    credentials_key_file: Path | None = Field(
        default=None, description="Key file used when GRIDPATROL_CREDENTIALS_KEY is unset (default <data dir>/credentials.key)"
    )

    def key_file(self, data_dir: Path) -> Path:
        return self.credentials_key_file or data_dir / KEY_FILE_NAME


class CredentialsError(CameraError):
    """A stored camera secret cannot be decrypted: wrong or missing key, or the value was tampered with."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class CredentialKey:
    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"gridpatrol credentials key id\0" + self.secret).hexdigest()[:12]

    @classmethod
    def generate(cls) -> CredentialKey:
        return cls(secrets.token_bytes(32))

    @classmethod
    def parse(cls, text: str, *, source: str) -> CredentialKey:
        try:
            raw = _unb64(text.strip())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"{source}: not a credentials key (base64url of 32 random bytes)")
        return cls(raw)

    def encoded(self) -> str:
        return _b64(self.secret)


def is_encrypted(value: str | None) -> bool:
    return value is not None and value.startswith(ENCRYPTED_PREFIX)


def key_id_of(value: str) -> str | None:
    """The key id an encrypted value names (None for plain text)."""
    if not value.startswith(_V1):
        return None
    return value[len(_V1) :].split(":", 1)[0]


class CredentialKeyring:
    """The key that encrypts, and every key that may decrypt (the older ones during a rotation)."""

    def __init__(
        self, primary: CredentialKey, others: Iterable[CredentialKey] = (), *, reload: Callable[[], list[CredentialKey]] | None = None
    ) -> None:
        self._reload = reload
        self._set([primary, *others])

    def _set(self, keys: list[CredentialKey]) -> None:
        self.primary = keys[0]
        self._keys = {k.key_id: k for k in reversed(keys)}

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def encrypt(self, plain: str, *, column: str) -> str:
        nonce = os.urandom(_NONCE)
        head = f"{_V1}{self.primary.key_id}:"
        sealed = AESGCM(self.primary.secret).encrypt(nonce, plain.encode("utf-8"), (head + column).encode())
        return head + _b64(nonce + sealed)

    def decrypt(self, stored: str, *, column: str) -> str:
        """The plain value; legacy plain text is returned as it is. Raises :class:`CredentialsError`."""
        if not stored.startswith(ENCRYPTED_PREFIX):
            return stored
        if not stored.startswith(_V1):
            raise CredentialsError(f"{column}: unknown encryption format {stored.split(':', 2)[1][:8]!r}")
        kid, _, body = stored[len(_V1) :].partition(":")
        key = self._keys.get(kid)
        if key is None and self._reload is not None:  # the key file changed under us (a rotation)
            self._set(self._reload())
            key = self._keys.get(kid)
        if key is None:
            raise CredentialsError(f"{column}: encrypted under key {kid[:12]}, which this process does not hold")
        try:
            raw = _unb64(body)
            if len(raw) < _NONCE + 16:
                raise ValueError("too short")
            plain = AESGCM(key.secret).decrypt(raw[:_NONCE], raw[_NONCE:], f"{_V1}{kid}:{column}".encode())
            return plain.decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError) as err:
            raise CredentialsError(f"{column}: the encrypted value was altered or is damaged (authentication failed)") from err

    def needs_sealing(self, stored: str | None) -> bool:
        """Plain text, or encrypted under a key other than the primary."""
        return stored is not None and key_id_of(stored) != self.primary.key_id


# --- keys on disk ------------------------------------------------------------------------------------------
def staged_key_file(path: Path) -> Path:
    """Where a rotation keeps the new key until the database is re-encrypted (loaded as a decryption key)."""
    return path.with_name(path.name + ".next")


def key_file_key(path: Path) -> CredentialKey:
    """The key in ``path``, created there (0600, directory 0700) with a new random key when missing."""
    text = load_or_create_secret_file(path, nbytes=32, what="credentials key")
    return CredentialKey.parse(text, source=f"credentials key file {path}")


def _env_keys(settings: CredentialsSettings) -> list[CredentialKey]:
    assert settings.credentials_key is not None
    parts = [p for p in settings.credentials_key.get_secret_value().split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{ENV_KEY} is empty")
    return [CredentialKey.parse(p, source=f"{ENV_KEY} (key {i + 1})") for i, p in enumerate(parts)]


def load_keyring(
    settings: CredentialsSettings, *, data_dir: Path, create: bool = False, stored_key_ids: Callable[[], set[str]] | None = None
) -> CredentialKeyring:
    """The keyring from ``GRIDPATROL_CREDENTIALS_KEY`` or the key file.

    With ``create``, a missing key file is created, unless ``stored_key_ids()`` shows the database already
    holds credentials under another key (a second machine without the shared key): that is a ConfigError
    telling the operator to share the key instead of silently starting a second one."""
    if settings.credentials_key is not None:
        return CredentialKeyring(*_split(_env_keys(settings)))
    path = settings.key_file(data_dir)

    def from_file() -> list[CredentialKey]:
        if not path.exists():
            raise ConfigError(f"credentials key file {path} has disappeared: restore it from the backup")
        keys = [key_file_key(path)]
        staged = staged_key_file(path)  # a rotation under way, or one that stopped before installing its key
        if staged.exists():
            keys.append(key_file_key(staged))
        return keys

    if not path.exists():
        if not create:
            raise ConfigError(f"no credentials key: set {ENV_KEY} or create {path} (gridpatrol secrets encrypt-credentials)")
        held = stored_key_ids() if stored_key_ids is not None else set()
        if held:
            raise ConfigError(
                f"the database holds camera credentials encrypted under key {', '.join(sorted(held))}, and this machine "
                f"has no key: set {ENV_KEY} or copy {KEY_FILE_NAME} from the machine that created it to {path}"
            )
        key_file_key(path)
        logger.warning("created the camera credentials key %s (mode 0600): back it up apart from the database", path)
    keys = from_file()
    return CredentialKeyring(*_split(keys), reload=from_file)


def _split(keys: list[CredentialKey]) -> tuple[CredentialKey, list[CredentialKey]]:
    return keys[0], keys[1:]


# --- cameras --------------------------------------------------------------------------------------------
def stream_host(url: str) -> str | None:
    """The host of a plain stream URL: the one part of it the API shows (kept in clear)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host[:255] if host else None


def set_camera_secrets(cam: Camera, keyring: CredentialKeyring | None, **values: str | None) -> None:
    """Store the given secret columns of a camera (``url=``, ``sub_url=``, ``onvif_url=``, ``onvif_password=``),
    encrypted when a keyring is given (otherwise plain, sealed at the next worker start)."""
    for column, value in values.items():
        if column not in SECRET_FIELDS:
            raise ValueError(f"{column} is not a camera secret")
        if value is not None and keyring is not None:
            value = keyring.encrypt(value, column=column)
        setattr(cam, column, value)


def camera_secret(cam_name: str, column: str, stored: str | None, keyring: CredentialKeyring | None) -> str | None:
    """One decrypted secret of a camera; the error names the camera."""
    if stored is None:
        return None
    if keyring is None:
        if is_encrypted(stored):
            raise CredentialsError(f"camera {cam_name}: {column} is encrypted and no credentials key is configured")
        return stored
    try:
        return keyring.decrypt(stored, column=column)
    except CredentialsError as err:
        raise CredentialsError(f"camera {cam_name}: {err}") from err


def unreadable_marker(stored: str) -> str:
    """What a worker hands its reader for a URL it cannot decrypt: names the key, holds no secret."""
    return f"{ENCRYPTED_PREFIX}unreadable:{key_id_of(stored) or 'unknown-format'}"


def stored_key_ids(factory: sessionmaker[Session]) -> set[str]:
    """Key ids the cameras' stored secrets name (empty while nothing is encrypted)."""
    with factory() as session:
        values = session.execute(select(*(getattr(Camera, c) for c in SECRET_FIELDS))).all()
    return {kid for row in values for v in row if v and (kid := key_id_of(v))}


@dataclass
class SealReport:
    sealed: int = 0
    failed: list[str] = field(default_factory=list)


def _locked_cameras(session: Session) -> list[Camera]:
    return list(session.scalars(select(Camera).order_by(Camera.id).with_for_update()))


def seal_cameras(session: Session, keyring: CredentialKeyring) -> SealReport:
    """Encrypt legacy plain-text secrets (and those under an older key) under the primary key, inside the
    caller's transaction. A camera whose secrets cannot be decrypted is left as it is and named."""
    report = SealReport()
    for cam in _locked_cameras(session):
        stored = {c: getattr(cam, c) for c in SECRET_FIELDS}
        if not any(keyring.needs_sealing(v) for v in stored.values()):
            continue
        try:
            plain = {c: camera_secret(cam.name, c, v, keyring) for c, v in stored.items()}
        except CredentialsError as err:
            logger.error("camera %s: credentials left as they are: %s", cam.id, err)
            report.failed.append(cam.name)
            continue
        set_camera_secrets(cam, keyring, **plain)
        if cam.stream_host is None and plain["url"]:
            cam.stream_host = stream_host(plain["url"])
        report.sealed += 1
    session.flush()
    return report


def rotate_camera_credentials(session: Session, *, current: CredentialKeyring, new_key: CredentialKey) -> int:
    """Re-encrypt every camera's secrets under ``new_key`` inside the caller's transaction (all or nothing:
    a camera ``current`` cannot decrypt raises :class:`CredentialsError` naming it). Returns the cameras."""
    target = CredentialKeyring(new_key)
    cameras = _locked_cameras(session)
    for cam in cameras:
        plain = {c: camera_secret(cam.name, c, getattr(cam, c), current) for c in SECRET_FIELDS}
        set_camera_secrets(cam, target, **plain)
    session.flush()
    return len(cameras)


def prepare_credentials(factory: sessionmaker[Session], settings: CredentialsSettings, *, data_dir: Path) -> CredentialKeyring:
    """What a process that reads or writes cameras does first: load (or create) the key, then encrypt the
    plain-text secrets left by older versions. Cameras it cannot decrypt are logged, never fatal."""
    from models.db.engine import transaction

    keyring = load_keyring(settings, data_dir=data_dir, create=True, stored_key_ids=lambda: stored_key_ids(factory))
    with transaction(factory) as session:
        report = seal_cameras(session, keyring)
    if report.sealed:
        logger.info("encrypted the credentials of %d camera(s) under key %s", report.sealed, keyring.primary.key_id)
    return keyring


@dataclass
class RotationReport:
    cameras: int
    key_id: str
    #: where the new key now is (the key file, or the --new-key-file to distribute when the key is in the env)
    key_file: Path
    installed: bool


def rotate_credentials_key(
    factory: sessionmaker[Session], settings: CredentialsSettings, *, data_dir: Path, new_key_file: Path | None = None
) -> RotationReport:
    """Re-encrypt every camera's secrets under a new key in one transaction; the old key stays readable
    until the transaction commits (the new one waits in ``<key file>.next``, which readers also load).

    Key file setup: the new key then replaces the key file. ``GRIDPATROL_CREDENTIALS_KEY`` setup: the new
    key is written to (or read from) ``new_key_file`` and the operator puts it into the environment."""
    from models.db.engine import transaction

    current = load_keyring(settings, data_dir=data_dir, create=False)
    from_env = settings.credentials_key is not None
    if from_env and new_key_file is None:
        raise ConfigError(f"{ENV_KEY} is set: give --new-key-file, where the new key is written for you to distribute")
    new_key = key_file_key(new_key_file) if new_key_file is not None else None
    if new_key is not None and new_key.key_id == current.primary.key_id:
        raise ConfigError("the new key is the key in use: give a new key")
    key_path = settings.key_file(data_dir)
    staged = staged_key_file(key_path)
    if not from_env:
        # an earlier rotation that stopped left its key there: ``current`` holds it, so the rows it
        # encrypted are re-encrypted below like the others
        staged.unlink(missing_ok=True)
        if new_key is None:
            new_key = key_file_key(staged)  # a new random key
        else:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(new_key.encoded() + "\n")
    assert new_key is not None
    try:
        with transaction(factory) as session:
            count = rotate_camera_credentials(session, current=current, new_key=new_key)
    except BaseException:
        if not from_env:
            staged.unlink(missing_ok=True)
        raise
    if from_env:
        assert new_key_file is not None
        return RotationReport(cameras=count, key_id=new_key.key_id, key_file=new_key_file, installed=False)
    os.replace(staged, key_path)
    logger.warning("camera credentials now under key %s (%s); the old key no longer decrypts them", new_key.key_id, key_path)
    return RotationReport(cameras=count, key_id=new_key.key_id, key_file=key_path, installed=True)
