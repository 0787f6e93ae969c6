"""Which key signs the API's access tokens, decided once when a process that serves the API starts.

- ``GRIDPATROL_SECRET_KEY`` set: that key (``ApiSettings`` has already refused a weak one).
- ``GRIDPATROL_ENVIRONMENT=demo`` and no key: the published demo key, with a loud warning in the log.
- Embedded (a SQLite database, so one machine): a random key generated on the first start and kept in
  ``<data dir>/jwt-signing.key`` (mode 0600); every process sharing the data directory reads it.
- Distributed (any other database URL, e.g. PostgreSQL: API processes may run on several machines,
  which cannot share that file): no key is an error that says how to set one.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from api.settings import DEMO_SECRET, HOW_TO_GENERATE, MIN_SECRET_CHARS, check_secret_strength
from gridpatrol.settings import Settings
from models.errors import ConfigError
from models.secrets import load_or_create_secret_file

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "jwt-signing.key"


def key_file(settings: Settings) -> Path:
    return settings.storage.data_dir / KEY_FILE_NAME


def is_distributed(settings: Settings) -> bool:
    """A database other than SQLite means API processes may run on several machines."""
    url = settings.storage.resolved_database_url()
    try:
        return make_url(url).get_backend_name() != "sqlite"
    except ArgumentError:  # an unparsable URL fails later with its own message; assume it is shared
        return True


def settings_with_signing_key(settings: Settings) -> Settings:
    """``settings`` whose API section carries the signing key this installation uses (see the module
    docstring); :class:`ConfigError` naming ``GRIDPATROL_SECRET_KEY`` when there can be none."""
    api = settings.api
    if api.secret_key:
        if api.secret_key == DEMO_SECRET:
            logger.warning(
                "*** DEMO MODE (GRIDPATROL_ENVIRONMENT=demo): access tokens are signed with the demo key published "
                "in GridPatrol's source; anyone can forge a login. Never expose this installation. ***"
            )
        return settings
    path = key_file(settings)
    if is_distributed(settings):
        raise ConfigError(
            "GRIDPATROL_SECRET_KEY is not set and the database is not SQLite (distributed: API processes on "
            f"several machines cannot share a generated key file): set GRIDPATROL_SECRET_KEY to the same random "
            f"value of at least {MIN_SECRET_CHARS} characters for every API process, e.g. the output of {HOW_TO_GENERATE}"
        )
    existed = path.exists()
    key = load_or_create_secret_file(path, what="JWT signing key")
    try:
        check_secret_strength(key, variable=f"the key in {path}")
    except ConfigError as err:
        raise ConfigError(f"{err} (or remove {path} to have a new one generated)") from err
    if existed:
        logger.info("access tokens are signed with the key kept in %s", path)
    else:
        logger.warning(
            "generated a new JWT signing key in %s (mode 0600); keep it private and back it up with the data "
            "directory (losing it only logs everyone out)",
            path,
        )
    return dataclasses.replace(settings, api=settings.api.model_copy(update={"secret_key": key}))
