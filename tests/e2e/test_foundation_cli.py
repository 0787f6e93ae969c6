"""A newcomer's path through the real CLI and server: import grids, cameras and users, log in as a grid
leader, see exactly that grid's cameras. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from models.db.engine import make_engine
from models.db.tables import Camera, GridNode
from tests.support import sample
from tests.support.cli_batch import run_cli_batch
from tests.support.procs import free_port, run_cli, serving


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://"),
        "GRIDPATROL_SECRET_KEY": "e2e-secret-key-with-at-least-32-characters",
    }


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_then_leader_sees_own_grid_only(env: dict[str, str], tmp_path: Path) -> None:
    grids, cams = sample.write_files(tmp_path)
    assert "8 created" in ok(run_cli(["grids", "import", str(grids)], env))
    assert "4 created" in ok(run_cli(["cameras", "import", str(cams)], env))
    for user, grid in [("leader-g1", "G1"), ("leader-g3", "G3")]:
        ok(run_cli(["users", "add", user, "--role", "grid_leader", "--grid", grid, "--password", sample.PASSWORD], env))
    port = free_port()
    with serving(["serve", "--port", str(port)], env, port=port) as base:
        def login(user: str) -> dict[str, str]:
            r = httpx.post(f"{base}/api/auth/token", data={"username": user, "password": sample.PASSWORD})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        g1, g3 = login("leader-g1"), login("leader-g3")
        mine = httpx.get(f"{base}/api/cameras", headers=g1).json()["items"]
        assert {c["name"] for c in mine} == {"cam-g1-a", "cam-g1-b"}
        assert {c["grid_code"] for c in mine} == {"G1"}
        theirs = httpx.get(f"{base}/api/cameras", headers=g3).json()["items"]
        assert [c["name"] for c in theirs] == ["cam-g3-a"]
        assert httpx.get(f"{base}/api/cameras/{theirs[0]['id']}", headers=g1).status_code == 404
        assert httpx.get(f"{base}/api/cameras/{theirs[0]['id']}", headers=g3).status_code == 200


BAD_INPUTS = [
    ("broken json", "grids", '{"type": "FeatureCollection", "features": [', "not valid JSON (line 1"),
    (
        "self-intersecting",
        "grids",
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"code": "D9", "name": "d", "kind": "district"},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                        },
                    }
                ],
            }
        ),
        "feature 1 (code 'D9'): field 'geometry': invalid polygon: Self-intersection",
    ),
    ("csv lat 200", "cameras", "name,url,lon,lat\ncam-x,rtsp://127.0.0.1/x,118.7,200\n", "line 2 ('cam-x'): field 'lat'"),
]


@pytest.mark.parametrize(("case", "what", "content", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_files_fail_with_a_clear_message_and_import_nothing(
    env: dict[str, str], db_url: str, tmp_path: Path, case: str, what: str, content: str, message: str
) -> None:
    suffix = ".geojson" if what == "grids" else ".csv"
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    result = run_cli([what, "import", str(path)], env)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "nothing was imported" in result.stderr or "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert [conn.scalar(select(func.count()).select_from(t)) for t in (GridNode, Camera)] == [0, 0]
    engine.dispose()


def test_a_bad_camera_row_imports_no_camera(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    """The grid file fixed, the camera file with one good row and one bad: refused as a whole, the good row
    is not imported either (the grids are)."""
    grids, _ = sample.write_files(tmp_path)
    ok(run_cli(["grids", "import", str(grids)], env))
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("name,url,lon,lat\ngood,rtsp://127.0.0.1/g,118.705,32.105\nbad,rtsp://127.0.0.1/b,118.7,200\n")
    result = run_cli(["cameras", "import", str(mixed)], env)
    assert result.returncode != 0 and "line 3 ('bad'): field 'lat'" in result.stderr, result.stderr
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert [conn.scalar(select(func.count()).select_from(t)) for t in (GridNode, Camera)] == [8, 0]
    engine.dispose()


#: a command with a bad value, and what its error must say
BAD_ARGS = [
    (["users", "add", "x1", "--role", "king", "--password", "long-enough"], "unknown role 'king'"),
    (["users", "add", "x1", "--role", "grid_leader", "--password", "long-enough"], "needs at least one grid"),
    (["users", "add", "x1", "--role", "grid_leader", "--grid", "NOPE", "--password", "long-enough"], "'NOPE'"),
    (["users", "add", "x1", "--role", "admin", "--password", "short"], "field 'password'"),
    (["grids", "import", "/nonexistent.geojson"], "No such file"),
]


def test_cli_errors_name_the_bad_field(env: dict[str, str]) -> None:
    results = run_cli_batch([args for args, _ in BAD_ARGS], env)
    for (args, message), result in zip(BAD_ARGS, results, strict=True):
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, args


def test_zones_get_output_is_read_back_by_zones_set(env: dict[str, str], tmp_path: Path) -> None:
    grids, cams = sample.write_files(tmp_path)
    lane = {"name": "东侧消防通道", "kind": "fire_lane", "polygon": [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]], "dwell_s": 10}
    first = tmp_path / "zones.json"
    first.write_text(json.dumps({"zones": [lane]}, ensure_ascii=False), encoding="utf-8")
    *imports, saved, got = run_cli_batch([
        ["grids", "import", str(grids)], ["cameras", "import", str(cams)],
        ["zones", "set", "cam-g1-a", str(first)], ["zones", "get", "cam-g1-a"],
    ], env)  # fmt: skip
    for result in imports:
        ok(result)
    assert "zones version 1" in ok(saved)
    printed = json.loads(ok(got))
    assert (printed["version"], printed["zones"][0]["name"]) == (1, "东侧消防通道")
    printed["zones"][0]["dwell_s"] = 30
    again = tmp_path / "edited.json"
    again.write_text(json.dumps(printed, ensure_ascii=False), encoding="utf-8")
    # the same edit once more starts from version 1, which is no longer current: refused, nothing saved
    saved, stale, got = run_cli_batch(
        [["zones", "set", "cam-g1-a", str(again)], ["zones", "set", "cam-g1-a", str(again)], ["zones", "get", "cam-g1-a"]], env
    )
    assert "zones version 2" in ok(saved)
    assert stale.returncode != 0 and "since version 1 (now version 2)" in stale.stderr + stale.stdout
    assert json.loads(ok(got))["version"] == 2
