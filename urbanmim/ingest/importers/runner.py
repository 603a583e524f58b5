"""Run an import: validate everything, then upsert in batches, idempotently, with a summary.

Why it is shaped this way:

* **Nothing partial.** A file is read and every record turned into an internal entity
  (``parse_entity``, the same validation as the API) *before* the first write. A broken
  file raises :class:`ImportFailed` and the store is not touched; a bad record is
  *rejected* with its reason and position, the rest are written (``strict`` turns any
  rejection into a failure, again before writing).
* **Idempotent.** Each entity is written with :func:`upsert_fn`, a mutation that runs
  inside the store's writer transaction and compares the incoming attributes with the
  stored ones *ignoring system timestamps*: identical → ``UNCHANGED`` (nothing written,
  so ``modifiedAt`` and the temporal history do not move); different → only the
  attributes that differ get new timestamps; absent → created. Attributes the file does
  not carry (e.g. live values written by devices) are kept.
* **Batches through the EntityService**, so temporal history and notifications see the
  import like any API write; one batch is one store transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from urbanmim.errors import NgsiError
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import SYSTEM_KEYS, Entity, Instance, is_subattr_key
from urbanmim.ngsild.payload import parse_entity
from urbanmim.service.entities import EntityService, now_iso
from urbanmim.store.base import UNCHANGED, Mutation

CREATED, UPDATED, SAME = "created", "updated", "unchanged"


class ImportFailed(Exception):
    """The file cannot be imported at all (unreadable, wrong format, missing columns): nothing is written."""


@dataclass
class Record:
    """One row/feature as read from a file: an NGSI-LD payload, or why it cannot be one."""

    where: str                        # e.g. "feature 3", "row 12", "stops.txt row 5"
    payload: dict[str, Any] | None = None
    reason: str | None = None         # set when the reader already rejected it
    context: TermMap | None = None    # overrides the import's @context (GTFS: per entity type)


@dataclass
class Rejected:
    where: str
    reason: str


@dataclass
class Summary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    failed: list[Rejected] = field(default_factory=list)     # valid, but the store refused them
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.created + self.updated

    def lines(self, max_reasons: int = 20) -> list[str]:
        out = [f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
               f"rejected {len(self.rejected)}, failed {len(self.failed)} ({self.seconds:.2f} s)"]
        for kind, items in (("rejected", self.rejected), ("failed", self.failed)):
            for r in items[:max_reasons]:
                out.append(f"  {kind}: {r.where}: {r.reason}")
            if len(items) > max_reasons:
                out.append(f"  ... and {len(items) - max_reasons} more {kind}")
        return out


# ---- idempotent upsert ------------------------------------------------------------------------------
def _content(inst: Any) -> Any:
    """An instance without system timestamps (recursively in sub-attributes): what "same" compares."""
    if not isinstance(inst, dict):
        return inst
    return {k: (_content(v) if is_subattr_key(k) and isinstance(v, dict) else v)
            for k, v in inst.items() if k not in SYSTEM_KEYS and k != "instanceId"}


def _stamped(inst: Instance, now: str, created: str | None) -> Instance:
    inst["createdAt"] = created or now
    inst["modifiedAt"] = now
    for k, v in inst.items():
        if is_subattr_key(k) and isinstance(v, dict):
            v.setdefault("createdAt", created or now)
            v["modifiedAt"] = now
    return inst


def upsert_fn(ent: Entity) -> Callable[[Entity | None], tuple[Any, Any]]:
    """Create, or update only what differs, or leave alone (see the module docstring)."""
    def fn(cur: Entity | None) -> tuple[Any, Any]:
        if cur is None:
            new, _ = EntityService.create_fn(ent)(None)
            return new, CREATED
        now = now_iso()
        changed = False
        for t in ent.get("type", []):
            if t not in cur["type"]:
                cur["type"].append(t)
                changed = True
        if "scope" in ent and ent["scope"] != cur.get("scope"):
            cur["scope"] = ent["scope"]
            changed = True
        for iri, insts in ent["attrs"].items():
            old = cur["attrs"].get(iri, [])
            if [_content(i) for i in old] == [_content(i) for i in insts]:
                continue
            created = {i.get("datasetId"): i.get("createdAt") for i in old}
            cur["attrs"][iri] = [_stamped(i, now, created.get(i.get("datasetId"))) for i in insts]
            changed = True
        if not changed:
            return UNCHANGED, SAME
        cur["modifiedAt"] = now
        return cur, UPDATED
    return fn


def create_missing_fn(ent: Entity) -> Callable[[Entity | None], tuple[Any, Any]]:
    """Create when absent, never touch an existing entity (the demo: keep live values on re-runs)."""
    def fn(cur: Entity | None) -> tuple[Any, Any]:
        if cur is not None:
            return UNCHANGED, SAME
        new, _ = EntityService.create_fn(ent)(None)
        return new, CREATED
    return fn


# ---- validation, then writing --------------------------------------------------------------------------
def offline(settings: Any) -> Any:
    """Settings for a one-shot process (import, demo --no-serve): no MQTT session of its own, which
    would take over the running server's session (same client id, derived from the db)."""
    import dataclasses
    if getattr(settings, "mqtt_url", ""):
        return dataclasses.replace(settings, mqtt_url="")
    return settings


def validate(records: Iterable[Record], ctx: TermMap, *, strict: bool = False) -> tuple[list[Entity],
                                                                                         list[Rejected]]:
    """Every record → an internal entity or a rejection. Duplicate ids: the first one wins."""
    entities: list[Entity] = []
    rejected: list[Rejected] = []
    seen: dict[str, str] = {}
    for rec in records:
        if rec.reason is not None or rec.payload is None:
            rejected.append(Rejected(rec.where, rec.reason or "empty record"))
            continue
        try:
            ent = parse_entity(rec.payload, rec.context or ctx)
        except NgsiError as e:
            rejected.append(Rejected(rec.where, e.detail if hasattr(e, "detail") else str(e)))
            continue
        if ent["id"] in seen:
            rejected.append(Rejected(rec.where, f"duplicate id {ent['id']} (first at {seen[ent['id']]})"))
            continue
        seen[ent["id"]] = rec.where
        entities.append(ent)
    if strict and rejected:
        first = rejected[0]
        raise ImportFailed(f"{len(rejected)} record(s) rejected (strict mode, nothing written); "
                           f"first: {first.where}: {first.reason}")
    return entities, rejected


def batches(items: list[Entity], size: int) -> Iterator[list[Entity]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


async def write(service: EntityService, tenant: str, entities: list[Entity], *, batch_size: int = 500,
                progress: Callable[[int], None] | None = None,
                fn: Callable[[Entity], Any] = upsert_fn, summary: Summary | None = None) -> Summary:
    """Upsert ``entities`` in batches (one store transaction each), counting what happened."""
    summary = summary or Summary()
    t0 = time.perf_counter()
    for chunk in batches(entities, batch_size):
        outs = await service.batch(tenant, [Mutation(e["id"], fn(e)) for e in chunk])
        for out in outs:
            if out.error is not None:
                summary.failed.append(Rejected(out.entity_id, str(getattr(out.error, "detail", out.error))))
            elif out.result == CREATED:
                summary.created += 1
            elif out.result == UPDATED:
                summary.updated += 1
            else:
                summary.unchanged += 1
        if progress is not None:
            progress(len(chunk))
    summary.seconds += time.perf_counter() - t0
    return summary


def progress_bar(total: int, label: str, *, enabled: bool = True) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A rich progress bar on stderr: (advance(n), close()). Disabled → no-ops (tests, pipes)."""
    if not enabled or total == 0:
        return (lambda n: None), (lambda: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=False)
    task = bar.add_task(label, total=total)
    bar.start()
    return (lambda n: bar.advance(task, n)), bar.stop


async def import_file(settings: Any, importer: str, path: str, tenant: str, mapping: Any, *,
                      context: str | None = None, strict: bool = False, batch_size: int = 500,
                      show_progress: bool = True) -> Summary:
    """What ``urbanmim import`` does: read + validate the whole file, then upsert in batches.

    The platform app is opened (not served) so the import goes through the same store
    listeners (temporal history, notifications) as API writes."""
    from pathlib import Path

    from urbanmim.app import create_app
    from urbanmim.ingest.importers import get_importer

    reader = get_importer(importer)
    records = reader(Path(path), mapping)           # may raise ImportFailed: nothing written yet
    app = create_app(offline(settings))
    async with app.router.lifespan_context(app):
        try:
            ctx = await app.state.contexts.resolve(context) if context else None
        except NgsiError as e:
            raise ImportFailed(f"--context {context}: {e.detail}") from None
        from urbanmim.ngsild.contexts import CORE
        entities, rejected = validate(records, ctx or CORE, strict=strict)
        if entities and any(r.context is not None for r in records):
            # SDM-expanded entities (GTFS): host the subject contexts so clients can use short names
            from urbanmim.ingest.demo.loader import host_contexts
            await host_contexts(app)
        advance, close = progress_bar(len(entities), f"import {Path(path).name} → {tenant or '(default)'}",
                                      enabled=show_progress)
        try:
            summary = await write(app.state.entities, tenant, entities, batch_size=batch_size, progress=advance,
                                  summary=Summary(rejected=rejected))
        finally:
            close()
    return summary


def import_command(args: Any, settings: Any) -> int:
    """The ``urbanmim import FORMAT FILE`` command: exit 0 done, 1 some records rejected/failed, 2 refused."""
    import asyncio
    import sys

    from urbanmim.ingest.importers import Mapping, parse_map
    try:
        if args.format in ("geojson", "csv") and not args.type:
            raise ImportFailed(f"--type is required for {args.format} (the entity type of every record)")
        mapping = Mapping(type=args.type or "Thing", id_field=args.id_field,
                          attrs=[parse_map(m) for m in args.map or []], id_prefix=args.id_prefix,
                          lon_field=args.lon, lat_field=args.lat,
                          options={"feed": args.feed, "stop_times": args.stop_times})
        summary = asyncio.run(import_file(settings, args.format, args.file, args.tenant, mapping, context=args.context,
                                          strict=args.strict, batch_size=args.batch_size,
                                          show_progress=not args.no_progress))
    except ImportFailed as e:
        print(f"urbanmim import: error: {e}", file=sys.stderr)
        print("urbanmim import: nothing was written", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    return 1 if summary.rejected or summary.failed else 0
