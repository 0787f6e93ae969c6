"""Issue 11: reading commands never create a database; ``status`` says which one is used; the listings
an operator expects (cameras, grids, users, tickets) as JSON and as aligned tables. Through the real CLI,
on SQLite and on PostgreSQL, after importing the sample tree, cameras and users through the CLI.

The import runs once per database kind (nine CLI processes); each test then reads its own copy of that
database and of the data directory (its credentials key), so no test sees another's writes."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text

from gridpatrol.cli_lists import display_width
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Camera, CameraOutage, GridNode, Ticket, User
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support import sample
from tests.support.cli_batch import run_cli_batch
from tests.support.databases import PG_ADMIN_URL, postgres_available, postgres_database
from tests.support.procs import free_port, run_cli
from tests.support.require import require

READ_COMMANDS = [
    ["zones", "get", "1"],
    ["cameras", "list"],
    ["grids", "list", "--tree"],
    ["users", "list", "--json"],
    ["tickets", "list"],
]


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "GRIDPATROL_DATA_DIR": str(tmp_path / "var"),
        "GRIDPATROL_SECRET_KEY": "e2e-secret-key-with-at-least-32-characters",
        "GRIDPATROL_DATABASE_URL": "",
        "GRIDPATROL_REDIS_URL": "",
        "GRIDPATROL_TIMEZONE": "Asia/Shanghai",
    }


def cli_url(db_url: str) -> str:
    return db_url.replace("postgresql+psycopg://", "postgresql://")


def import_sample(db_url: str, directory: Path) -> Path:
    """The sample tree, cameras and users imported through the CLI; returns the data directory."""
    e = {**base_env(directory), "GRIDPATROL_DATABASE_URL": cli_url(db_url)}
    grids, cams = sample.write_files(directory)
    commands = [["grids", "import", str(grids)], ["cameras", "import", str(cams)]]
    for username, (role, codes) in sample.USERS.items():
        grid_args = [arg for code in codes for arg in ("--grid", code)]
        commands.append(["users", "add", username, "--role", role, "--password", sample.PASSWORD, *grid_args])
    for result in run_cli_batch(commands, e):
        ok(result)
    return directory / "var"


class Imported:
    """Per database kind, made on first use: the database the CLI imported the sample into, and its data dir."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._made: dict[str, tuple[str, Path]] = {}
        self._pg = None

    def get(self, kind: str) -> tuple[str, Path]:
        if kind not in self._made:
            directory = self._factory.mktemp(f"imported-{kind}")
            if kind == "sqlite":
                url = f"sqlite:///{directory / 'imported.db'}"  # created and migrated by the first import
            else:
                require(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
                self._pg = postgres_database()
                url = self._pg.__enter__()
            self._made[kind] = (url, import_sample(url, directory))
        return self._made[kind]

    def close(self) -> None:
        if self._pg is not None:
            self._pg.__exit__(None, None, None)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    made = Imported(tmp_path_factory)
    yield made
    made.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, imported: Imported, tmp_path: Path) -> Iterator[str]:
    """This test's copy of the database the CLI imported the sample into (and of its data directory)."""
    source, data_dir = imported.get(request.param)
    shutil.copytree(data_dir, tmp_path / "var")
    if request.param == "sqlite":
        target = tmp_path / "gridpatrol-copy.db"
        shutil.copyfile(make_url(source).database or "", target)
        yield f"sqlite:///{target}"
        return
    name = f"gp_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(source).database}"'))
    try:
        yield make_url(source).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """The sample tree, cameras and users, imported through the CLI (see the module docstring)."""
    return {**base_env(tmp_path), "GRIDPATROL_DATABASE_URL": cli_url(db_url)}


# --- a missing database ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a))
def test_a_read_on_a_missing_sqlite_file_fails_in_one_line_and_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    env = base_env(tmp_path)
    result = run_cli(args, env)
    assert result.returncode != 0
    path = (tmp_path / "var" / "gridpatrol.db").resolve()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: no database at {path}: ")
    assert "GRIDPATROL_DATA_DIR" in lines[0] and "GRIDPATROL_DATABASE_URL" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "var").exists()  # neither the file nor its directory


def test_a_read_through_a_url_to_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    env = {**base_env(tmp_path), "GRIDPATROL_DATABASE_URL": f"sqlite:///{target}"}
    result = run_cli(["cameras", "list", "--json"], env)
    assert result.returncode != 0
    assert f"no database at {target}" in result.stderr
    assert not target.exists()


def test_status_of_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    result = run_cli(["status", "--json"], env)
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["database"]["exists"] is False
    assert doc["database"]["path"] == str((tmp_path / "var" / "gridpatrol.db").resolve())
    assert doc["database"]["head"]  # the code's revision is known without a database
    assert doc["counts"] is None
    assert len(doc["problems"]) == 1 and "no database at" in doc["problems"][0]
    text = run_cli(["status"], env)
    assert text.returncode == 1
    assert "MISSING" in text.stdout and "problem: no database at" in text.stdout
    assert not (tmp_path / "var").exists()


# --- status -------------------------------------------------------------------------------------------------
def test_status_names_the_database_and_counts_what_it_holds(env: dict[str, str], db_url: str) -> None:
    env = {**env, "GRIDPATROL_TIMEZONE": "Asia/Urumqi", "GRIDPATROL_ENVIRONMENT": "development"}
    as_json, as_text = run_cli_batch([["status", "--json"], ["status"]], env)
    doc = json.loads(ok(as_json))
    db = doc["database"]
    assert db["exists"] is True and db["up_to_date"] is True and db["revision"] == db["head"] and db["head"]
    assert doc["counts"] == {"grid_nodes": 8, "cameras": 4, "users": len(sample.USERS), "live_tickets": 0}
    assert doc["timezone"] == "Asia/Urumqi"
    assert doc["environment"] == "development"
    assert doc["bus"] == {"kind": "in-process", "url": None, "reachable": None, "error": None}
    assert doc["problems"] == []
    if db_url.startswith("sqlite"):
        assert (db["backend"], db["path"]) == ("sqlite", db_url.removeprefix("sqlite:///"))
    else:
        assert db["backend"] == "postgresql" and db["path"] is None
        assert "***@" in db["url"] and "postgres@" not in db["url"]
    text = ok(as_text)
    assert "time zone    Asia/Urumqi" in text
    assert f"schema       {db['head']} (up to date)" in text
    assert "grid nodes 8 · cameras 4 · users 7 · live tickets 0" in text


def test_status_redacts_the_redis_url_and_reports_it_unreachable(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "GRIDPATROL_REDIS_URL": f"redis://gp:hunter2-secret@127.0.0.1:{free_port()}/0"}
    result = run_cli(["status", "--json"], env)
    assert result.returncode == 1
    assert "hunter2-secret" not in result.stdout + result.stderr
    bus = json.loads(result.stdout)["bus"]
    assert bus["kind"] == "redis" and bus["reachable"] is False
    assert bus["url"].startswith("redis://***@127.0.0.1:")


def test_status_sees_a_reachable_redis(tmp_path: Path) -> None:
    require(redis_available(), "Redis on 127.0.0.1:6379")
    env = {**base_env(tmp_path), "GRIDPATROL_REDIS_URL": REDIS_URL}
    bus = json.loads(run_cli(["status", "--json"], env).stdout)["bus"]
    assert (bus["kind"], bus["reachable"]) == ("redis", True)


# --- listings ------------------------------------------------------------------------------------------------
def test_cameras_grids_and_users_lists(env: dict[str, str]) -> None:
    runs = iter(run_cli_batch([
        ["cameras", "list", "--json"], ["cameras", "list"], ["cameras", "list", "--grid", "S1", "--json"],
        ["cameras", "list", "--grid", "NOPE"], ["grids", "list", "--json"], ["users", "list", "--json"],
        ["users", "list", "--role", "manager", "--json"], ["users", "list", "--role", "grid_leader"],
        ["users", "list", "--role", "king"],
    ], env))  # fmt: skip
    cams = json.loads(ok(next(runs)))["cameras"]
    assert len(cams) == 4
    assert [(c["name"], c["grid"], c["host"], c["enabled"]) for c in cams] == [
        (name, grid, "127.0.0.1", True) for name, grid in sorted(sample.CAMERAS.items())
    ]
    assert {(c["has_sub_stream"], c["analysis_stream"], c["analysed_stream"]) for c in cams} == {(False, "auto", "main")}
    out = ok(next(runs))
    assert sample.CAMERA_SECRET not in out and "admin:" not in out
    assert "ANALYSED" in out and out.count("主码流") == 4  # no sub-stream: the main stream is analysed
    s1 = json.loads(ok(next(runs)))["cameras"]
    assert sorted(c["name"] for c in s1) == ["cam-g1-a", "cam-g1-b", "cam-g2-a"]  # the street's subtree
    unknown = next(runs)
    assert unknown.returncode != 0 and "no grid node with code 'NOPE'" in unknown.stderr

    grids = json.loads(ok(next(runs)))["grids"]
    assert len(grids) == 8
    by_code = {g["code"]: g for g in grids}
    assert (by_code["G1"]["name"], by_code["G1"]["kind"], by_code["G1"]["parent"]) == ("桥北第一网格", "grid", "C1")
    assert {code: g["responsible"] for code, g in by_code.items()} == {
        "D1": ["manager-d1"], "S1": ["manager-s1"], "S2": [], "C1": [], "C2": [],
        "G1": ["leader-g1"], "G2": [], "G3": ["leader-g3"],  # a patroller is not G2's leader
    }  # fmt: skip
    assert by_code["D1"]["parent"] is None

    users = json.loads(ok(next(runs)))["users"]
    assert len(users) == len(sample.USERS)
    assert {u["username"]: (u["role"], u["grids"], u["enabled"]) for u in users} == {
        name: (role, sorted(codes), True) for name, (role, codes) in sample.USERS.items()
    }
    managers = json.loads(ok(next(runs)))["users"]
    assert [u["username"] for u in managers] == ["manager-d1", "manager-s1"]
    table = ok(next(runs))
    assert "网格长 grid_leader" in table and "2 user(s)" in table
    bad = next(runs)
    assert bad.returncode != 0 and "unknown role 'king'" in bad.stderr


def test_grids_tree_marks_nodes_nobody_answers_for(env: dict[str, str]) -> None:
    as_text, as_json = run_cli_batch([["grids", "list", "--tree"], ["grids", "list", "--tree", "--json"]], env)
    lines = ok(as_text).splitlines()
    tree = "\n".join(lines)
    by_code = {}
    for line in lines[:-1]:
        code = next(word for word in line.replace("├─", " ").replace("└─", " ").replace("│", " ").split())
        by_code[code] = line
    assert len(by_code) == 8, tree
    for unanswered in ("S2", "G2", "C1", "C2"):
        assert "⚠ 无负责人" in by_code[unanswered], tree
    for answered in ("D1", "S1", "G1", "G3"):
        assert "⚠" not in by_code[answered], tree
    assert "网格长 leader-g1" in by_code["G1"] and "负责人 manager-s1" in by_code["S1"]
    assert by_code["G2"].index("G2") > by_code["C1"].index("C1") > by_code["S1"].index("S1")  # indented by depth
    # the marks stand in one column whatever the width of the Chinese names before them
    columns = {display_width(line[: line.rindex("  ") + 2]) for line in lines[:-1]}
    assert len(columns) == 1, tree
    nested = json.loads(ok(as_json))["grids"]
    assert [n["code"] for n in nested] == ["D1"]
    assert [s["code"] for s in nested[0]["children"]] == ["S1", "S2"]
    assert nested[0]["children"][1]["responsible"] == []


def seed_tickets(db_url: str) -> dict[str, int]:
    """Three tickets written straight into the database (the listing is what is under test)."""
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    try:
        with transaction(make_session_factory(engine)) as session:
            grid = {n.code: n.id for n in session.scalars(select(GridNode))}
            cam = {c.name: c.id for c in session.scalars(select(Camera))}
            user = {u.username: u.id for u in session.scalars(select(User))}
            rows = {
                "late": Ticket(category="road_occupation", camera_id=cam["cam-g1-a"], grid_id=grid["G1"], state="open",
                               opened_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), accept_by=now - timedelta(minutes=65),
                               resolve_by=now + timedelta(hours=1)),
                "dispatched": Ticket(category="fire_lane_blockage", camera_id=cam["cam-g3-a"], grid_id=grid["G3"],
                                     state="dispatched", assignee_id=user["leader-g3"],
                                     opened_at=datetime(2026, 1, 3, 16, 0, 0, tzinfo=UTC),
                                     accept_by=now + timedelta(minutes=5), resolve_by=now + timedelta(hours=1)),
                "closed": Ticket(category="crowding", camera_id=cam["cam-g1-b"], grid_id=grid["G1"], state="closed",
                                 opened_at=datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), accept_by=now - timedelta(days=1),
                                 resolve_by=now - timedelta(days=1)),
            }  # fmt: skip
            session.add_all(rows.values())
            session.flush()
            return {k: t.id for k, t in rows.items()}
    finally:
        engine.dispose()


def test_tickets_list(env: dict[str, str], db_url: str) -> None:
    ids = seed_tickets(db_url)
    runs = iter(run_cli_batch([
        ["tickets", "list", "--json"], ["tickets", "list", "--state", "open", "--json"],
        ["tickets", "list", "--grid", "S2", "--json"], ["tickets", "list", "--limit", "1", "--json"],
        ["status", "--json"], ["tickets", "list"], ["tickets", "list", "--state", "done"],
    ], env))  # fmt: skip
    doc = json.loads(ok(next(runs)))
    items = doc["tickets"]
    assert [t["id"] for t in items] == [ids["dispatched"], ids["late"], ids["closed"]]  # newest first
    late, dispatched, closed = (next(t for t in items if t["id"] == ids[k]) for k in ("late", "dispatched", "closed"))
    assert (late["state"], late["state_zh"], late["category"], late["grid"], late["camera"]) == (
        "open", "待派遣", "road_occupation", "G1", "cam-g1-a"
    )
    assert late["opened_at_local"] == "2026-01-02 11:04:05"  # Asia/Shanghai
    assert late["overdue"] is True and late["overdue_s"] >= 65 * 60
    assert (dispatched["state_zh"], dispatched["assignee"], dispatched["overdue"]) == ("待受理", "leader-g3", False)
    assert dispatched["opened_at_local"] == "2026-01-04 00:00:00"
    assert (closed["state_zh"], closed["overdue"]) == ("已结案", False)  # deadlines passed, but it is done
    assert doc["timezone"] == "Asia/Shanghai"

    only_open = json.loads(ok(next(runs)))["tickets"]
    assert [t["id"] for t in only_open] == [ids["late"]]
    street = json.loads(ok(next(runs)))["tickets"]
    assert [t["id"] for t in street] == [ids["dispatched"]]
    newest = json.loads(ok(next(runs)))["tickets"]
    assert [t["id"] for t in newest] == [ids["dispatched"]]
    status = json.loads(ok(next(runs)))
    assert status["counts"]["live_tickets"] == 2

    text = ok(next(runs))
    assert "待派遣 open" in text and "超时 1小时" in text and "2026-01-02 11:04:05" in text and "3 ticket(s)" in text
    bad = next(runs)
    assert bad.returncode != 0 and "unknown state 'done'" in bad.stderr


def test_camera_outages_list(env: dict[str, str], db_url: str) -> None:
    """An operator lists the outages the ticketers recorded (models/grid/outages.py writes them; here they are
    written straight into the database): newest first, the ongoing one marked, filters by grid and state."""
    engine = make_engine(db_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            cam = {c.name: c.id for c in session.scalars(select(Camera))}
            since = datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)
            session.add_all([
                CameraOutage(camera_id=cam["cam-g1-a"], started_at=since, state="backoff", reason="connection refused",
                             offline_notice_at=since + timedelta(minutes=2), ended_at=since + timedelta(minutes=32),
                             online_notice_at=since + timedelta(minutes=32)),
                CameraOutage(camera_id=cam["cam-g3-a"], ongoing_camera_id=cam["cam-g3-a"],
                             started_at=since + timedelta(days=1), state="unknown", reason="no worker reports it",
                             offline_notice_at=since + timedelta(days=1, minutes=2)),
            ])  # fmt: skip
    finally:
        engine.dispose()
    runs = iter(run_cli_batch([
        ["cameras", "outages", "--json"], ["cameras", "outages", "--ongoing", "--json"],
        ["cameras", "outages", "--grid", "S1", "--json"], ["cameras", "outages"],
    ], env))  # fmt: skip
    items = json.loads(ok(next(runs)))["outages"]
    assert [(i["camera"], i["ongoing"]) for i in items] == [("cam-g3-a", True), ("cam-g1-a", False)]
    done = items[1]
    assert (done["started_at_local"], done["ended_at_local"], done["duration_s"]) == (
        "2026-01-02 11:00:00", "2026-01-02 11:32:00", 1920.0
    )  # Asia/Shanghai
    assert [i["camera"] for i in json.loads(ok(next(runs)))["outages"]] == ["cam-g3-a"]
    assert [i["camera"] for i in json.loads(ok(next(runs)))["outages"]] == ["cam-g1-a"]
    text = ok(next(runs))
    assert "离线中" in text and "32分0秒" in text and "已通知" in text and "connection refused" in text
    assert "2 outage(s)" in text


def test_zones_get_of_an_unknown_camera_names_the_database(env: dict[str, str], db_url: str) -> None:
    result = run_cli(["zones", "get", "99"], env)
    assert result.returncode != 0
    assert "no camera named or numbered '99' in " in result.stderr
    assert "cameras list" in result.stderr
