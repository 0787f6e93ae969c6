"""Notification benchmark: what queueing notifications adds to the ticketer's batch, and how many
messages per second the outbox delivers to a robot endpoint on loopback, with one and two deliverers,
on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_notify.py [--db sqlite|postgresql|both] [--tickets 300] [--messages 600]

Queueing: ``--tickets`` ``started`` events on distinct zones of one camera (each opens a ticket that is
auto-dispatched to the grid's leader) are ingested in one transaction, once with the leader having no
channel and once with two channels (WeCom and DingTalk): the difference is the notification cost.
Delivery: ``--messages`` due rows are sent to a ThreadingHTTPServer answering ``{"errcode": 0}``; the
robot's answer time is loopback's, so this is the outbox's own ceiling, not WeCom's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy import delete, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridpatrol.notify import Notifier, senders_for  # noqa: E402
from models.db.engine import make_engine, make_session_factory, transaction, upgrade  # noqa: E402
from models.db.tables import Camera, NotifyChannel, NotifyDelivery, Ticket, User  # noqa: E402
from models.evidence.store import FileEvidenceStore  # noqa: E402
from models.grid.credentials import CredentialKey, CredentialKeyring  # noqa: E402
from models.notify.preferences import ChannelSpec, save_preferences  # noqa: E402
from models.notify.settings import NotifySettings  # noqa: E402
from models.tickets.categories import TicketSettings  # noqa: E402
from models.tickets.desk import TicketDesk  # noqa: E402
from models.tickets.ingest import ingest_events  # noqa: E402
from tests.conftest import seed  # noqa: E402
from tests.support.databases import postgres_database  # noqa: E402
from tests.support.events import Episode  # noqa: E402


class Robot(BaseHTTPRequestHandler):
    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with Robot.lock:
            Robot.count += 1
        raw = json.dumps({"errcode": 0, "errmsg": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: object) -> None:
        pass


def ingest_s(factory, desk: TicketDesk, camera_id: int, n: int, tag: str) -> float:  # type: ignore[no-untyped-def]
    start = datetime.now(UTC)
    events = [Episode(camera_id, zone=f"{tag}{i}", start=start).event("started") for i in range(n)]
    t0 = time.perf_counter()
    with transaction(factory) as s:
        ingest_events(s, desk, events)
    return time.perf_counter() - t0


def run(url: str, *, tickets: int, messages: int, folder: Path) -> dict[str, float]:
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    seed(factory, folder)
    desk = TicketDesk(TicketSettings(), evidence=FileEvidenceStore(folder / "evidence"))
    keyring = CredentialKeyring(CredentialKey.generate())
    with factory() as s:
        camera_id = s.scalars(select(Camera.id).where(Camera.name == "cam-g1-a")).one()
    out: dict[str, float] = {}
    ingest_s(factory, desk, camera_id, 20, "warm")  # caches, first statements
    out["ingest_no_channel_ms_per_ticket"] = ingest_s(factory, desk, camera_id, tickets, "a") / tickets * 1000
    with transaction(factory) as s:
        leader = s.scalars(select(User).where(User.username == "leader-g1")).one()
        save_preferences(s, leader, version=0, kinds=["assigned"], quiet_start=None, quiet_end=None, timezone="Asia/Shanghai",
                         urgent_in_quiet=True, keyring=lambda: keyring,
                         channels=[ChannelSpec(kind="wecom", key="bench-robot-key-0001"),
                                   ChannelSpec(kind="dingtalk", access_token="bench-token-0001", sign_secret="SECbench0001secret")])  # fmt: skip
    out["ingest_two_channels_ms_per_ticket"] = (
        ingest_s(factory, desk, camera_id, tickets, "b") / tickets * 1000
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Robot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    settings = NotifySettings(notify_wecom_url=f"{base}/wecom", notify_dingtalk_url=f"{base}/ding")
    for deliverers in (1, 2):
        with transaction(factory) as s:
            s.execute(delete(NotifyDelivery))
            channels = list(s.scalars(select(NotifyChannel)))
            ticket_id = s.scalars(select(Ticket.id).limit(1)).one()
            payload = {
                "ticket_id": ticket_id,
                "category": "fire_lane_blockage",
                "case_code": "消防通道堵塞",
                "place": "区/街道/社区/网格",
            }
            s.add_all(NotifyDelivery(user_id=channels[i % 2].user_id, channel_id=channels[i % 2].id, kind="assigned", ticket_id=ticket_id,
                                     payload=payload, state="pending", next_attempt_at=datetime.now(UTC)) for i in range(messages))  # fmt: skip
        Robot.count = 0

        def deliver() -> None:
            with httpx.Client(timeout=10.0) as client:
                n = Notifier(factory, settings, senders_for(settings, client), keyring=lambda: keyring)
                while n.deliver_due(batch=50):
                    pass

        t0 = time.perf_counter()
        threads = [threading.Thread(target=deliver) for _ in range(deliverers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        assert Robot.count == messages, (Robot.count, messages)
        out[f"deliver_msgs_per_s_{deliverers}"] = messages / elapsed
    server.shutdown()
    engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--tickets", type=int, default=300)
    ap.add_argument("--messages", type=int, default=600)
    args = ap.parse_args()
    for kind in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            folder = Path(tmp)
            url = (
                f"sqlite:///{folder / 'bench.db'}"
                if kind == "sqlite"
                else stack.enter_context(postgres_database())
            )
            got = run(url, tickets=args.tickets, messages=args.messages, folder=folder)
            print(kind, " ".join(f"{k}={v:.2f}" for k, v in got.items()))


if __name__ == "__main__":
    main()
