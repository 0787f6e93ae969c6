"""The platform's device registry in the database (``models.grid.gb28181``): what ``GbPlatform`` calls
when devices register, keep alive, go offline and send their catalogs. Every method blocks."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from ingest.gb28181.catalog import Catalog
from ingest.gb28181.registrar import DeviceState
from models.db.engine import transaction
from models.grid import gb28181 as registry
from models.grid.credentials import CredentialKeyring


class DbDeviceStore:
    """Devices, channels and their cameras in the database; camera URLs sealed under ``keyring``."""

    def __init__(self, factory: sessionmaker[Session], *, keyring: CredentialKeyring | None) -> None:
        self.factory = factory
        self.keyring = keyring

    def registered(self, state: DeviceState, *, expires_s: int) -> None:
        with transaction(self.factory) as session:
            registry.record_registration(
                session,
                device_id=state.device_id,
                domain=state.domain,
                transport=state.peer.transport,
                host=state.peer.host,
                port=state.peer.port,
                user_agent=state.user_agent,
                expires_s=expires_s,
            )

    def set_status(self, device_id: str, status: str) -> None:
        with transaction(self.factory) as session:
            registry.set_device_status(session, device_id, status)

    def keepalive(self, device_id: str) -> None:
        with transaction(self.factory) as session:
            registry.record_keepalive(session, device_id)

    def save_catalog(self, device_id: str, catalog: Catalog) -> int:
        specs = [
            registry.ChannelSpec(
                channel_id=item.channel_id,
                name=item.name,
                civil_code=item.civil_code,
                manufacturer=item.manufacturer,
                model=item.model,
                address=item.address,
                status=item.status,
                lon=item.lon,
                lat=item.lat,
                is_camera=item.is_video_channel,
            )
            for item in catalog.items
        ]
        with transaction(self.factory) as session:
            report = registry.save_catalog(session, device_id, specs, credentials=self.keyring)
        return report.cameras_created + report.cameras_updated

    def channel_of_camera(self, camera_id: int) -> tuple[str, str] | None:
        with self.factory() as session:
            return registry.channel_of_camera(session, camera_id)
