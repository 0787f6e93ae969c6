"""ONVIF against a device we did not write: ipycam, in a network namespace of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from ingest.onvif import (
    CameraAuthError,
    DeviceDescription,
    MediaProfile,
    describe,
    discover,
    parse_address,
    parse_probe_matches,
    with_credentials,
)
from ingest.probe import probe
from models.db.tables import Camera
from models.errors import CameraError
from models.grid.credentials import CredentialKeyring, camera_secret, is_encrypted, key_file_key
from tests.support.onvif_device import OnvifDevice, ipycam_available
from tests.support.procs import GRIDPATROL
from tests.support.require import require

USER, PASSWORD = "admin", "admin-pass"


@pytest.fixture(scope="module")
def device() -> Iterator[OnvifDevice]:
    require(ipycam_available(), "ipycam in .venv-ipycam (scripts/setup.d/10-ingest.sh) and root for `ip netns`")
    with OnvifDevice(username=USER, password=PASSWORD) as dev:
        yield dev


@pytest.fixture(scope="module")
def described(device: OnvifDevice) -> DeviceDescription:
    return device.call(lambda: describe(f"http://127.0.0.1:{device.onvif_port}/onvif/device_service", USER, PASSWORD))


def test_device_information(described: DeviceDescription) -> None:
    assert (described.manufacturer, described.model) == ("PythonCam", "VirtualCam-1")
    assert described.serial_number and described.firmware_version
    assert described.missing == []


def test_profiles_with_resolution_codec_and_uris(described: DeviceDescription, device: OnvifDevice) -> None:
    by_size = {p.resolution_wh: p for p in described.profiles}
    assert set(by_size) == {(640, 360), (320, 180)}
    assert {p.encoding for p in described.profiles} == {"H264"}
    assert described.main_profile is by_size[(640, 360)] and described.sub_profile is by_size[(320, 180)]
    assert described.analysis_profile is by_size[(320, 180)]
    assert described.viewing_profile is by_size[(640, 360)]
    assert described.analysis_profile.stream_uri == f"rtsp://127.0.0.1:{device.rtsp_port}/video_sub"
    assert described.viewing_profile.stream_uri == f"rtsp://127.0.0.1:{device.rtsp_port}/video_main"
    data = described.to_dict()
    assert data["analysis_uri"].endswith("/video_sub") and data["viewing_uri"].endswith("/video_main")
    assert data["sub_uri"].endswith("/video_sub") and data["main_uri"].endswith("/video_main")


def test_cli_registration_records_main_and_sub_stream(device: OnvifDevice, tmp_path: Path) -> None:
    """``gridpatrol cameras add --onvif`` (the real CLI, run inside the device's namespace) stores the main
    stream (the largest profile) and the sub-stream, both encrypted; the worker will analyse the sub-stream."""
    env = {**os.environ, "GRIDPATROL_DATA_DIR": str(tmp_path / "var"), "GRIDPATROL_DATABASE_URL": "",
           "GRIDPATROL_REDIS_URL": "", "GRIDPATROL_SECRET_KEY": "onvif-secret-key-with-at-least-32-characters"}
    add = ["ip", "netns", "exec", device.netns, GRIDPATROL, "cameras", "add", "gate-1",
           "--onvif", f"http://127.0.0.1:{device.onvif_port}", "--user", USER, "--password", PASSWORD]  # fmt: skip
    done = subprocess.run(add, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "main stream rtsp://***@127.0.0.1" in done.stdout and "(640x360)" in done.stdout
    assert "sub-stream rtsp://***@127.0.0.1" in done.stdout and "(320x180), analysed" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    listed = subprocess.run([GRIDPATROL, "cameras", "list", "--json"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    (cam,) = json.loads(listed.stdout)["cameras"]
    assert (cam["name"], cam["has_sub_stream"], cam["analysis_stream"], cam["analysed_stream"]) == (
        "gate-1", True, "auto", "sub",
    )  # fmt: skip
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'gridpatrol.db'}")
    with engine.connect() as conn:
        url, sub_url = conn.execute(select(Camera.url, Camera.sub_url)).one()
    engine.dispose()
    assert is_encrypted(url) and is_encrypted(sub_url)
    keyring = CredentialKeyring(key_file_key(tmp_path / "var" / "credentials.key"))
    plain = {c: camera_secret("gate-1", c, v, keyring) for c, v in (("url", url), ("sub_url", sub_url))}
    assert plain == {
        "url": f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{device.rtsp_port}/video_main",
        "sub_url": f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{device.rtsp_port}/video_sub",
    }
    main = device.call(lambda: probe(plain["url"], seconds=1.5, open_timeout_s=10))
    assert main["ok"] and main["resolution_wh"] == [640, 360], main


def test_snapshot_uri_serves_a_jpeg(described: DeviceDescription, device: OnvifDevice) -> None:
    uri = described.snapshot_uri
    assert uri == f"http://127.0.0.1:{device.onvif_port}/snapshot.jpg"
    resp = device.call(lambda: httpx.get(uri, auth=(USER, PASSWORD), timeout=10))
    assert resp.status_code == 200 and resp.content[:2] == b"\xff\xd8"


def test_sub_stream_reads_through_the_worker_reader(described: DeviceDescription, device: OnvifDevice) -> None:
    assert described.analysis_profile is not None and described.analysis_profile.stream_uri
    url = with_credentials(described.analysis_profile.stream_uri, USER, PASSWORD)
    report = device.call(lambda: probe(url, seconds=2.0, open_timeout_s=10))
    assert report["ok"], report
    assert report["codec"] == "h264" and report["resolution_wh"] == [320, 180]
    assert PASSWORD not in str(report)


def test_discovery_finds_the_device(device: OnvifDevice) -> None:
    found = device.call(lambda: discover(1.5))
    assert len(found) == 1
    assert found[0].xaddrs == [f"http://127.0.0.1:{device.onvif_port}/onvif/device_service"]
    assert found[0].name == "GridPatrol Test Cam" and found[0].endpoint.startswith("urn:uuid:")
    assert "dn:NetworkVideoTransmitter" in found[0].types


def test_wrong_password_is_a_clear_error(device: OnvifDevice) -> None:
    with pytest.raises(CameraAuthError, match="refused the credentials"):
        device.call(lambda: describe(f"127.0.0.1:{device.onvif_port}", USER, "wrong"))


def test_unreachable_device_is_a_camera_error(device: OnvifDevice) -> None:
    with pytest.raises(CameraError, match="unreachable"):
        device.call(lambda: describe("127.0.0.1:9", USER, PASSWORD, timeout_s=3))


STANDARD_MATCH = b"""<?xml version="1.0"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
 xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery">
<s:Header><a:RelatesTo>urn:uuid:1</a:RelatesTo></s:Header>
<s:Body><d:ProbeMatches><d:ProbeMatch>
<a:EndpointReference><a:Address>urn:uuid:cam-7</a:Address></a:EndpointReference>
<d:Types>dn:NetworkVideoTransmitter</d:Types>
<d:Scopes>onvif://www.onvif.org/name/Gate%20North onvif://www.onvif.org/hardware/DS-2CD</d:Scopes>
<d:XAddrs>http://192.0.2.7/onvif/device_service http://[2001:db8::7]/onvif/device_service</d:XAddrs>
</d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>"""


@pytest.mark.parametrize(
    ("payload", "relates_to", "endpoints"),
    [(STANDARD_MATCH, "urn:uuid:1", ["urn:uuid:cam-7"]), (STANDARD_MATCH, "urn:uuid:other", []),
     (b"<not-xml", None, []), (b"<x/>", None, [])],
)
def test_parse_probe_matches(payload: bytes, relates_to: str | None, endpoints: list[str]) -> None:
    found = parse_probe_matches(payload, relates_to=relates_to, sender="192.0.2.7")
    assert [d.endpoint for d in found] == endpoints
    if found:
        assert found[0].name == "Gate North" and found[0].hardware == "DS-2CD" and len(found[0].xaddrs) == 2


@pytest.mark.parametrize(
    ("address", "expected"),
    [("http://10.1.2.3:8080/onvif/device_service", ("10.1.2.3", 8080)), ("cam.local:8000", ("cam.local", 8000)),
     ("10.1.2.3", ("10.1.2.3", 80)), ("https://cam", ("cam", 443))],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


def test_with_credentials_encodes_and_replaces() -> None:
    assert with_credentials("rtsp://h:554/s", "ad min", "p@ss:w") == "rtsp://ad%20min:p%40ss%3Aw@h:554/s"
    assert with_credentials("rtsp://old:x@h/s", "u", "p") == "rtsp://u:p@h/s"
    assert with_credentials("rtsp://h/s", "", "") == "rtsp://h/s"


def _profile(token: str, wh: tuple[int, int] | None, uri: str | None = "rtsp://h/x") -> MediaProfile:
    return MediaProfile(token, token, "H265", wh, 25.0, uri and f"{uri}/{token}", None)


@pytest.mark.parametrize(
    ("profiles", "main", "sub"),
    [
        # Hikvision/Dahua-style three streams: the sub-stream is the second, not the smallest
        ([_profile("p3", (640, 360)), _profile("p1", (2560, 1440)), _profile("p2", (1280, 720))], "p1", "p2"),
        ([_profile("p1", (1920, 1080))], "p1", None),  # one stream: nothing to analyse but the main one
        ([_profile("p1", (1280, 720)), _profile("p2", (1280, 720))], "p1", None),  # same size: no sub-stream
        ([_profile("p1", (1920, 1080)), _profile("p2", (640, 480), uri=None)], "p1", None),  # no URI: unusable
        ([], None, None),
    ],
)
def test_main_and_sub_profile_choice(profiles: list[MediaProfile], main: str | None, sub: str | None) -> None:
    found = DeviceDescription("192.0.2.7", 80, profiles=profiles)
    assert (found.main_profile.token if found.main_profile else None) == main
    assert (found.sub_profile.token if found.sub_profile else None) == sub
    assert (found.analysis_profile.token if found.analysis_profile else None) == (sub or main)
