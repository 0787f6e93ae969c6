"""Camera files with a sub-stream: ``sub_url`` is stored encrypted like ``url``, ``analysis_stream`` picks
the stream the worker analyses, and a bad value is refused naming the line and the field."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Camera
from models.errors import InvalidInput
from models.grid.cameras import analysed_stream, parse_camera_text, register_cameras
from models.grid.credentials import (
    CredentialKey,
    CredentialKeyring,
    camera_secret,
    is_encrypted,
    seal_cameras,
)

HEADER = "name,url,sub_url,analysis_stream,lon,lat\n"
MAIN, SUB = "rtsp://admin:Cam-Secret-7x@10.0.0.7/main", "rtsp://admin:Cam-Secret-7x@10.0.0.7/sub"


@pytest.mark.parametrize(
    ("row", "where", "message"),
    [
        (f"c1,{MAIN},ftp://10.0.0.7/sub,,,", "line 2 ('c1')", "field 'sub_url': scheme must be one of"),
        (f"c1,{MAIN},rtsp:///sub,,,", "line 2 ('c1')", "field 'sub_url': has no host"),
        (
            f"c1,{MAIN},{SUB},best,,",
            "line 2 ('c1')",
            "field 'analysis_stream': 'best' is not one of auto, sub, main",
        ),
        (
            f"c1,{MAIN},,sub,,",
            "line 2 ('c1')",
            "field 'analysis_stream': is 'sub' but the camera has no sub-stream",
        ),
    ],
)
def test_bad_stream_columns_name_line_and_field(row: str, where: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_camera_text(HEADER + row + "\n", yaml_format=False)
    assert str(err.value).startswith(f"{where}: {message}"), str(err.value)


@pytest.mark.parametrize(
    ("setting", "has_sub", "analysed"),
    [(None, True, "sub"), (None, False, "main"), ("sub", True, "sub"), ("sub", False, "main"),
     ("main", True, "main"), ("main", False, "main")],
)  # fmt: skip
def test_the_analysed_stream(setting: str | None, has_sub: bool, analysed: str) -> None:
    assert analysed_stream(setting, has_sub=has_sub) == analysed


def test_sub_url_is_stored_encrypted_and_the_setting_kept(session_factory: sessionmaker[Session]) -> None:
    keyring = CredentialKeyring(CredentialKey.generate())
    text = HEADER + f"c1,{MAIN},{SUB},main,,\nc2,{MAIN}2,,,,\n"
    with transaction(session_factory) as session:
        report = register_cameras(session, parse_camera_text(text, yaml_format=False), credentials=keyring)
    assert report.created == 2
    with session_factory() as session:
        c1, c2 = session.scalars(select(Camera).order_by(Camera.name)).all()
        assert is_encrypted(c1.sub_url) and "Cam-Secret-7x" not in (c1.sub_url or "")
        assert camera_secret("c1", "sub_url", c1.sub_url, keyring) == SUB
        assert (c1.analysis_stream, c2.sub_url, c2.analysis_stream) == ("main", None, None)
    # a re-import without the columns (an older file) leaves the sub-stream and the setting alone
    again = "name,url,lon,lat\n" + f"c1,{MAIN},,\n"
    with transaction(session_factory) as session:
        register_cameras(session, parse_camera_text(again, yaml_format=False), credentials=keyring)
    with session_factory() as session:
        cam = session.scalars(select(Camera).where(Camera.name == "c1")).one()
        assert (camera_secret("c1", "sub_url", cam.sub_url, keyring), cam.analysis_stream) == (SUB, "main")
    # "sub" for a camera that has none in the database either: refused naming the camera
    with (
        transaction(session_factory) as session,
        pytest.raises(InvalidInput, match="camera 'c2': field 'analysis_stream'"),
    ):
        register_cameras(
            session,
            parse_camera_text(f"name,url,analysis_stream,lon,lat\nc2,{MAIN}2,sub,,\n", yaml_format=False),
        )
    yaml_text = f"cameras:\n- {{name: c1, url: '{MAIN}', sub_url: '{SUB}', analysis_stream: auto}}\n"
    with transaction(session_factory) as session:
        register_cameras(session, parse_camera_text(yaml_text, yaml_format=True), credentials=keyring)
    with session_factory() as session:
        assert session.scalar(select(Camera.analysis_stream).where(Camera.name == "c1")) is None


def test_a_plain_sub_url_is_sealed_like_url(session_factory: sessionmaker[Session]) -> None:
    """Rows written without a key (older versions, a CLI without one) are encrypted at the next start."""
    with transaction(session_factory) as session:
        register_cameras(session, parse_camera_text(HEADER + f"c1,{MAIN},{SUB},,,\n", yaml_format=False))
    keyring = CredentialKeyring(CredentialKey.generate())
    with transaction(session_factory) as session:
        assert seal_cameras(session, keyring).sealed == 1
    with session_factory() as session:
        cam = session.scalars(select(Camera)).one()
        assert is_encrypted(cam.url) and is_encrypted(cam.sub_url)
        assert camera_secret("c1", "sub_url", cam.sub_url, keyring) == SUB
