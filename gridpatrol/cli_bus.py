"""CLI commands about the bus: the dead letters an admin inspects and requeues."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gridpatrol.cli_common import fail, load_settings
from models.bus.messages import CONFIG_CHANGES, RULE_EVENTS, TICKET_NOTICES
from models.bus.protocol import DeadLetter
from models.errors import GridPatrolError

TOPICS = (RULE_EVENTS, CONFIG_CHANGES, TICKET_NOTICES)


def dead_letter_doc(d: DeadLetter) -> dict[str, object]:
    return {
        "id": d.id,
        "topic": d.topic,
        "entry_id": d.entry_id,
        "group": d.group,
        "deliveries": d.deliveries,
        "at": d.at.isoformat(),
        "error": d.error,
        "payload": d.payload.decode(errors="backslashreplace"),
    }


def register_bus_commands(app: typer.Typer) -> None:
    bus_app = typer.Typer(help="The message bus (Redis Streams) and its dead letters.", no_args_is_help=True)
    app.add_typer(bus_app, name="bus")

    @bus_app.command("dead-letters")
    def dead_letters(
        topic: Annotated[str | None, typer.Option(help=f"Only this topic (default: all of {', '.join(TOPICS)})")] = None,
        requeue: Annotated[
            bool, typer.Option("--requeue", help="Put the listed entries back on their topic and remove them from the dead letters")
        ] = False,
        ids: Annotated[list[str] | None, typer.Option("--id", help="Only this dead letter (repeatable)")] = None,
        limit: Annotated[int, typer.Option(help="Most dead letters listed per topic")] = 1000,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    ) -> None:
        """List the entries consumers gave up on (payload, error, deliveries, when); --requeue retries them."""
        settings = load_settings()
        if not settings.storage.redis_url:
            fail("no GRIDPATROL_REDIS_URL: the in-process bus keeps its dead letters inside the serving process")
        if topic is not None and topic not in TOPICS:
            fail(f"unknown topic {topic!r}; one of {', '.join(TOPICS)}")
        if limit < 1:
            fail("--limit must be at least 1")
        from models.bus.redis_streams import RedisBus  # here: redis costs every other command's start

        bus = RedisBus(settings.storage.redis_url, namespace=settings.storage.bus_namespace)
        listed: list[DeadLetter] = []
        requeued: list[str] = []
        try:
            for t in [topic] if topic else TOPICS:
                found = [d for d in bus.dead_letters(t, count=limit) if not ids or d.id in ids]
                listed += found
                if requeue and found:
                    requeued += bus.requeue_dead(t, ids=[d.id for d in found])
        except GridPatrolError as err:
            fail(str(err))
        finally:
            bus.close()
        if as_json:
            doc: dict[str, object] = {"dead_letters": [dead_letter_doc(d) for d in listed]}
            if requeue:
                doc["requeued"] = requeued
            print(json.dumps(doc, ensure_ascii=False))
            return
        for d in listed:
            print(f"{d.topic} {d.id} (entry {d.entry_id}, group {d.group}, {d.deliveries} deliveries, {d.at.isoformat()}): {d.error}")
            print(f"    {d.payload.decode(errors='backslashreplace')[:500]}")
        print(f"{len(listed)} dead letter(s)" + (f"; {len(requeued)} requeued" if requeue else ""))
