"""CLI commands about secrets at rest: encrypting camera credentials and rotating their key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.cli_common import fail, load_settings, open_db
from gridpatrol.settings import Settings
from models.errors import GridPatrolError
from models.grid.credentials import CredentialKeyring, prepare_credentials, rotate_credentials_key


def camera_keyring(settings: Settings, factory: sessionmaker[Session]) -> CredentialKeyring:
    """The camera credentials key for a command that writes cameras (plain-text rows get encrypted)."""
    try:
        return prepare_credentials(factory, settings.credentials, data_dir=settings.storage.data_dir)
    except GridPatrolError as err:
        fail(f"camera credentials: {err}")


def register_secrets_commands(app: typer.Typer) -> None:
    secrets_app = typer.Typer(help="Secrets at rest: camera credentials and their key.", no_args_is_help=True)
    app.add_typer(secrets_app, name="secrets")

    @secrets_app.command("encrypt-credentials")
    def encrypt_credentials() -> None:
        """Encrypt camera credentials still stored in plain text (workers also do it when they start);
        creates the key file on first use."""
        from models.db.engine import transaction
        from models.grid.credentials import load_keyring, seal_cameras, stored_key_ids

        settings = load_settings()
        factory = open_db(settings)
        try:
            keyring = load_keyring(
                settings.credentials, data_dir=settings.storage.data_dir, create=True,
                stored_key_ids=lambda: stored_key_ids(factory),
            )  # fmt: skip
            with transaction(factory) as session:
                report = seal_cameras(session, keyring)
        except GridPatrolError as err:
            fail(str(err))
        print(f"camera credentials: {report.sealed} camera(s) encrypted under key {keyring.primary.key_id}")
        if report.failed:
            fail(f"cannot be decrypted with the configured key: {', '.join(report.failed)}")

    @secrets_app.command("rotate-credentials-key")
    def rotate_credentials(
        new_key_file: Annotated[
            Path | None,
            typer.Option(help="The new key (created there, 0600, when the file does not exist); required when "
                         "GRIDPATROL_CREDENTIALS_KEY is set"),
        ] = None,
    ) -> None:
        """Re-encrypt every camera's credentials under a new key, in one transaction (all or nothing)."""
        settings = load_settings()
        factory = open_db(settings)
        try:
            report = rotate_credentials_key(
                factory, settings.credentials, data_dir=settings.storage.data_dir, new_key_file=new_key_file
            )
        except GridPatrolError as err:
            fail(f"nothing was changed: {err}")
        print(f"camera credentials: {report.cameras} camera(s) re-encrypted under key {report.key_id}")
        if report.installed:
            print(f"the new key replaced {report.key_file}; running workers load it by themselves")
        else:
            print(f"now set GRIDPATROL_CREDENTIALS_KEY to the content of {report.key_file} on every machine and "
                  "restart the workers: until then they report these cameras failed (credentials)")
