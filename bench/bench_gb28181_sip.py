"""GB/T 28181 signalling capacity: how many devices one platform process keeps registered and alive.

Starts ``gridpatrol gb28181 serve --no-gateway`` (SQLite by default, or ``--database-url``), then plays
N devices from this process over UDP: each registers with Digest (REGISTER, 401, REGISTER, 200), then
sends keepalive rounds. Reports registrations/s, keepalives/s, the platform's CPU seconds per
registration and per keepalive (from /proc), and what share of one core N devices at a 60 s keepalive
interval cost.

    .venv/bin/python bench/bench_gb28181_sip.py --devices 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.gb28181 import manscdp  # noqa: E402
from ingest.gb28181.registrar import digest_response  # noqa: E402
from ingest.gb28181.sip import SipMessage, auth_params, parse  # noqa: E402

PASSWORD = "bench-Sip-pass-1"
PLATFORM_ID = "34020000002000000001"
DOMAIN = "3402000000"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client(asyncio.DatagramProtocol):
    """Many devices over one socket: the platform tells them apart by the From header."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[SipMessage]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        msg = parse(data)
        key = f"{msg.call_id}/{msg.cseq[0]}"
        fut = self.waiting.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def request(self, msg: SipMessage, target: tuple[str, int]) -> SipMessage:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[f"{msg.call_id}/{msg.cseq[0]}"] = fut
        assert self.transport is not None
        for _ in range(5):  # UDP: retransmit like a device would
            self.transport.sendto(msg.encode(), target)
            try:
                return await asyncio.wait_for(asyncio.shield(fut), timeout=2.0)
            except TimeoutError:
                continue
        raise TimeoutError(f"no answer to {msg.method} {msg.call_id}")


def request(method: str, device_id: str, call_id: str, cseq: int, local_port: int) -> SipMessage:
    msg = SipMessage(method=method, uri=f"sip:{PLATFORM_ID}@{DOMAIN}")
    msg.headers = [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:{local_port};rport;branch=z9hG4bK{secrets.token_hex(6)}"),
        ("From", f"<sip:{device_id}@{DOMAIN}>;tag={device_id[-6:]}"),
        ("To", f"<sip:{device_id}@{DOMAIN}>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Max-Forwards", "70"),
    ]
    return msg


async def register(client: Client, device_id: str, target: tuple[str, int], local_port: int) -> None:
    call_id = f"reg-{device_id}"
    first = request("REGISTER", device_id, call_id, 1, local_port)
    first.headers += [("Contact", f"<sip:{device_id}@127.0.0.1:{local_port}>"), ("Expires", "3600")]
    challenge = await client.request(first, target)
    assert challenge.status == 401, challenge.status
    _, p = auth_params(challenge.header("www-authenticate"))
    uri = f"sip:{DOMAIN}"
    response = digest_response(
        username=device_id,
        realm=p["realm"],
        password=PASSWORD,
        method="REGISTER",
        uri=uri,
        nonce=p["nonce"],
        qop="auth",
        nc="00000001",
        cnonce="bench",
    )
    second = request("REGISTER", device_id, call_id, 2, local_port)
    second.headers += [
        ("Contact", f"<sip:{device_id}@127.0.0.1:{local_port}>"),
        (
            "Authorization",
            f'Digest username="{device_id}", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="bench"',
        ),
        ("Expires", "3600"),
    ]
    ok = await client.request(second, target)
    assert ok.status == 200, ok.status


async def keepalive(
    client: Client, device_id: str, sn: int, target: tuple[str, int], local_port: int
) -> None:
    msg = request("MESSAGE", device_id, f"ka-{device_id}", sn, local_port)
    msg.uri = f"sip:{PLATFORM_ID}@{DOMAIN}"
    msg.headers.append(("Content-Type", manscdp.CONTENT_TYPE))
    msg.body = manscdp.keepalive(sn=sn, device_id=device_id)
    ok = await client.request(msg, target)
    assert ok.status == 200, ok.status


async def bounded(jobs: list, limit: int) -> None:  # type: ignore[type-arg]
    sem = asyncio.Semaphore(limit)

    async def one(job) -> None:  # type: ignore[no-untyped-def]
        async with sem:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


async def drive(pid: int, sip_port: int, devices: int, rounds: int, concurrency: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    local_port = transport.get_extra_info("sockname")[1]
    target = ("127.0.0.1", sip_port)
    ids = [f"340200000013200{n:05d}" for n in range(devices)]
    out: dict[str, float] = {}
    cpu0, t0 = cpu_s(pid), time.perf_counter()
    await bounded([register(client, d, target, local_port) for d in ids], concurrency)
    t1 = time.perf_counter()
    await asyncio.sleep(2)  # the 200 goes out before the row is written: let the writes finish
    cpu1 = cpu_s(pid)
    out["registrations_per_s"] = devices / (t1 - t0)
    out["cpu_ms_per_registration"] = (cpu1 - cpu0) / devices * 1000
    t1 = time.perf_counter()
    for r in range(rounds):
        await bounded([keepalive(client, d, r + 10, target, local_port) for d in ids], concurrency)
    t2 = time.perf_counter()
    await asyncio.sleep(2)
    cpu2 = cpu_s(pid)
    n = devices * rounds
    out["keepalives_per_s"] = n / (t2 - t1)
    out["cpu_ms_per_keepalive"] = (cpu2 - cpu1) / n * 1000
    out["core_share_at_60s"] = (cpu2 - cpu1) / n * devices / 60
    transport.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="keepalive rounds (one keepalive per device each)")
    ap.add_argument("--concurrency", type=int, default=100, help="devices talking at once")
    ap.add_argument("--database-url", default="", help="PostgreSQL URL (default: a fresh SQLite file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sip_port = free_port()
        env = {
            **os.environ,
            "GRIDPATROL_DATA_DIR": tmp,
            "GRIDPATROL_DATABASE_URL": args.database_url,
            "GRIDPATROL_REDIS_URL": "",
            "GRIDPATROL_GB28181_PASSWORD": PASSWORD,
            "GRIDPATROL_GB28181_SIP_HOST": "127.0.0.1",
            "GRIDPATROL_GB28181_SIP_PORT": str(sip_port),
            "GRIDPATROL_GB28181_CATALOG_ON_REGISTER": "false",
        }
        log = open(Path(tmp) / "platform.log", "w+")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/gridpatrol"), "gb28181", "serve", "--no-gateway"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while "on sip:" not in Path(log.name).read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(Path(log.name).read_text()[-2000:])
                time.sleep(0.1)
            result = asyncio.run(drive(proc.pid, sip_port, args.devices, args.rounds, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            log.close()
    db = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{args.devices} devices, {args.rounds} keepalive rounds, {args.concurrency} at once, {db}")
    for key, value in result.items():
        print(f"  {key}: {value:.3f}")


if __name__ == "__main__":
    main()
