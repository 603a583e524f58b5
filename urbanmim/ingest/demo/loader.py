"""Load the demo cities into a running app, back-fill history, then keep them alive.

Why inside the app's lifespan: the load goes through the same EntityService and store
listeners as any API write (temporal history, notifications), finishes before the server
accepts its first request, and the simulator then lives exactly as long as the server.

Re-running is safe: entities are written with ``create_missing_fn`` (an existing entity
is left alone, so live values and ``modifiedAt`` survive a restart and nothing is
duplicated), and history is back-filled only for devices created by this run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from urbanmim.ingest.demo import sdm
from urbanmim.ingest.demo.cities import CITIES, CityProfile
from urbanmim.ingest.demo.generator import City, generate
from urbanmim.ingest.demo.simulator import (
    Device,
    MqttPublisher,
    Simulator,
    normalized,
    numeric_series,
    observe,
    service_publisher,
)
from urbanmim.ingest.importers.runner import (
    CREATED,
    Rejected,
    Summary,
    batches,
    create_missing_fn,
    offline,
    progress_bar,
    validate,
)
from urbanmim.ingest.importers.runner import Record as _Record
from urbanmim.ngsild.contexts import HOSTED_PATH, StoredContext
from urbanmim.store.base import Mutation, Outcome

log = logging.getLogger("urbanmim.demo")

# what --history back-fills, per device type (the attributes people chart)
HISTORY_ATTRS = {
    "AirQualityObserved": ("no2", "pm10", "pm25", "o3"), "NoiseLevelObserved": ("LAeq",),
    "TrafficFlowObserved": ("intensity", "averageVehicleSpeed"), "WeatherObserved": ("temperature",
                                                                                   "relativeHumidity", "windSpeed"),
    "OffStreetParking": ("availableSpotNumber",), "EVChargingStation": ("availableCapacity",),
    "BikeHireDockingStation": ("availableBikeNumber",), "Streetlight": ("powerConsumption",),
    "WasteContainer": ("fillingLevel",),
}


@dataclass
class CityReport:
    city: CityProfile
    summary: Summary
    counts: dict[str, int]
    history_rows: int = 0
    devices: list[Device] = field(default_factory=list)


async def host_contexts(app: Any) -> None:
    """Make the SDM subject contexts resolvable locally (``Link: <.../jsonldContexts/sdm-environment>``)."""
    reg = app.state.contexts
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for cid, doc in sdm.hosted_documents():
        url = "http://localhost" + HOSTED_PATH + cid
        known = reg.stored(url)
        if known is not None and known.document == doc:
            continue
        reg.documents[url] = StoredContext(id=cid, url=url, kind="Hosted", document=doc, created_at=created)
        reg.forget(url)
        await app.state.store.save_context(cid, url, doc, created)


def _records(city: City) -> list[_Record]:
    return [_Record(f"{city.profile.key} {e['id']}", e, context=sdm.for_type(e["type"])) for e in city.entities]


async def load(app: Any, profiles: list[CityProfile], *, at: float | None = None, history_days: float = 0,
               show_progress: bool = True, batch_size: int = 1000) -> list[CityReport]:
    """Generate and write the cities (missing entities only), then back-fill history for new devices."""
    at = time.time() if at is None else at
    await host_contexts(app)
    cities = [generate(p, at) for p in profiles]
    total = sum(len(c.entities) for c in cities)
    advance, close = progress_bar(total, "demo cities", enabled=show_progress)
    reports = []
    pending: list[tuple[City, Summary, set[str], list[asyncio.Future[list[Outcome]]]]] = []
    try:
        # validate city n+1 while the writer thread stores city n (every batch is queued at once)
        for city in cities:
            entities, rejected = validate(_records(city), sdm.term_map(None))
            if rejected:       # a generator bug: say so loudly, load the rest
                log.error("demo %s: %d generated entities invalid, first: %s", city.profile.key, len(rejected),
                          rejected[0])
            created_ids: set[str] = set()
            futs = []
            for chunk in batches(entities, batch_size):
                fut = asyncio.ensure_future(app.state.entities.batch(
                    city.profile.key, [Mutation(e["id"], create_missing_fn(e)) for e in chunk]))
                fut.add_done_callback(lambda f, n=len(chunk): advance(n))
                futs.append(fut)
            await asyncio.sleep(0)     # let every batch reach the writer's queue
            pending.append((city, Summary(rejected=rejected), created_ids, futs))
        for city, summary, created_ids, futs in pending:
            for outs in await asyncio.gather(*futs):
                for out in outs:
                    if out.error is not None:
                        summary.failed.append(Rejected(out.entity_id, str(getattr(out.error, "detail", out.error))))
                    elif out.result == CREATED:
                        summary.created += 1
                        created_ids.add(out.entity_id)
                    else:
                        summary.unchanged += 1
            new_devices = [d for d in city.devices if d.id in created_ids]
            reports.append(CityReport(city.profile, summary, city.counts(), devices=new_devices))
    finally:
        close()
    if history_days > 0:
        await backfill(app, reports, at, history_days, show_progress=show_progress)
    for r in reports:
        r.devices = [d for c in cities if c.profile is r.city for d in c.devices]
    return reports


def _step(days: float) -> float:
    """History resolution: hourly for a week or less, coarser beyond (keeps the back-fill in seconds)."""
    return 3600.0 if days <= 7 else 3600.0 * max(1, round(days / 7))


async def backfill(app: Any, reports: list[CityReport], at: float, days: float, *, show_progress: bool,
                   use_bulk: bool = True) -> None:
    """History for new devices: the temporal store's bulk path where there is one, else batched updates."""
    store = app.state.store
    step = _step(days)
    start = at - days * 86400
    bulk = getattr(store, "bulk_load_instances", None) if use_bulk else None
    if bulk is None:
        await backfill_by_updates(app, reports, start, at, step, show_progress=show_progress)
        return
    jobs = [(r, d) for r in reports for d in r.devices if d.type in HISTORY_ATTRS]
    advance, close = progress_bar(len(jobs), f"history ({days:g} days)", enabled=show_progress)
    pending: asyncio.Future[Any] | None = None
    try:
        for r, d in jobs:
            tm = sdm.for_type(d.type)
            series = numeric_series(r.city, d, start, at, step)     # computed while the previous one is written
            loads = [(r.city.key, d.id, tm.expand(d.type), tm.expand(attr), series[attr])
                     for attr in HISTORY_ATTRS[d.type] if series.get(attr)]
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(asyncio.to_thread(_bulk_all, bulk, loads))
            r.history_rows += sum(len(x[4]) for x in loads)
            advance(1)
        if pending is not None:
            await pending
    finally:
        close()


async def backfill_by_updates(app: Any, reports: list[CityReport], start: float, at: float, step: float, *,
                              show_progress: bool) -> None:
    """Any backend: one batch of attribute updates per city and time step (each recorded with its
    ``observedAt``), then the values of ``at`` again, so the entities end current."""
    from urbanmim.ngsild.payload import parse_fragment
    from urbanmim.service.entities import EntityService

    steps = [start + i * step for i in range(int((at - start) // step))] + [at]
    advance, close = progress_bar(len(steps) * len(reports), "history (batched updates)", enabled=show_progress)
    try:
        for r in reports:
            devices = [d for d in r.devices if d.type in HISTORY_ATTRS]
            for t in steps:
                muts = []
                for d in devices:
                    values = observe(r.city, d, t)
                    keep = values if t == at else {k: values[k] for k in HISTORY_ATTRS[d.type] if k in values}
                    frag = parse_fragment(normalized(keep, t), sdm.for_type(d.type))
                    muts.append(Mutation(d.id, EntityService.update_fn(d.id, frag)))
                    if t != at:
                        r.history_rows += len(keep)
                await app.state.entities.batch(r.city.key, muts)
                advance(1)
    finally:
        close()


def _bulk_all(bulk: Any, loads: list[tuple[Any, ...]]) -> None:
    for args in loads:
        bulk(*args)


@contextlib.asynccontextmanager
async def demo_lifespan(app: Any, inner: Any, profiles: list[CityProfile], *, history_days: float,
                        interval: float, show_progress: bool = True) -> AsyncIterator[None]:
    """The app's own lifespan, plus: load the cities before serving, run the simulator while serving."""
    async with inner(app):
        t0 = time.perf_counter()
        reports = await load(app, profiles, history_days=history_days, show_progress=show_progress)
        app.state.demo_reports = reports
        for line in report_lines(reports, time.perf_counter() - t0):
            log.info("%s", line)
        cities = [(r.city, r.devices) for r in reports]
        sim, mqtt = await simulator_for(app, cities, interval)

        async def live() -> None:
            if mqtt is not None:     # provisioning hashes a key per new device: not before serving
                n = await mqtt.provision(app.state.iot_agent.registry, cities, sdm.for_type)
                log.info("demo simulator: publishing over MQTT (%d devices provisioned now)", n)
            await sim.run()
        task = asyncio.create_task(live()) if interval > 0 else None
        app.state.demo_simulator = sim
        # the KPI pages should have figures the first time someone opens them: compute what is due
        # (the scheduler's own rule: nothing already computed is redone) in the background
        kpis = asyncio.create_task(_first_kpis(app)) if getattr(app.state, "kpi_scheduler", None) else None
        try:
            yield
        finally:
            for t in (task, kpis):
                if t is not None:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
            if mqtt is not None:
                await mqtt.close()


async def _first_kpis(app: Any) -> None:
    from urbanmim.kpi import scheduler
    try:
        n = await scheduler.run_once(app)
        log.info("demo: computed %d KPI values for the demo cities", n)
    except Exception:          # the demo serves without KPIs rather than not at all
        log.exception("demo: computing the first KPI values failed")


async def simulator_for(app: Any, cities: list[tuple[CityProfile, list[Device]]],
                        interval: float) -> tuple[Simulator, MqttPublisher | None]:
    """Over MQTT when ``mqtt_url`` is set, the device agent runs and the broker answers; else in-process."""
    url = str(getattr(app.state.settings, "mqtt_url", "") or "")
    if interval > 0 and url and getattr(app.state, "iot_agent", None) is not None:
        mqtt = MqttPublisher(url, str(getattr(app.state.settings, "mqtt_prefix", "urbanmim")))
        if await mqtt.connect():
            return Simulator(cities, mqtt.publish, interval=interval, via="mqtt"), mqtt
    return Simulator(cities, service_publisher(app.state.entities, sdm.for_type), interval=interval), None


def report_lines(reports: list[CityReport], seconds: float) -> list[str]:
    out = []
    for r in reports:
        s = r.summary
        out.append(f"demo {r.city.key} ({r.city.name}): {sum(r.counts.values())} entities — created {s.created}, "
                   f"already there {s.unchanged}, rejected {len(s.rejected)}, failed {len(s.failed)}"
                   + (f", {r.history_rows} history values" if r.history_rows else ""))
    out.append(f"demo: loaded in {seconds:.1f} s")
    return out


def pick(names: list[str] | None) -> list[CityProfile]:
    if not names:
        return list(CITIES.values())
    unknown = [n for n in names if n not in CITIES]
    if unknown:
        raise SystemExit(f"urbanmim demo: unknown city {', '.join(unknown)} (known: {', '.join(CITIES)})")
    return [CITIES[n] for n in names]


async def load_only(settings: Any, profiles: list[CityProfile], *, history_days: float,
                    show_progress: bool = True) -> list[str]:
    """``urbanmim demo --no-serve``: open the app (not served), load, report."""
    from urbanmim.app import create_app
    app = create_app(offline(settings))
    async with app.router.lifespan_context(app):
        t0 = time.perf_counter()
        reports = await load(app, profiles, history_days=history_days, show_progress=show_progress)
        return report_lines(reports, time.perf_counter() - t0)


def run_demo(args: Any, settings: Any) -> int:
    """The ``urbanmim demo`` command: load (idempotently), then serve with the simulator running."""
    import sys

    profiles = pick(args.city)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.no_serve:
        for line in asyncio.run(load_only(settings, profiles, history_days=args.history,
                                          show_progress=not args.no_progress)):
            print(line)
        return 0
    import uvicorn

    from urbanmim.app import create_app
    from urbanmim.cli import exposure_or_exit
    exposure_or_exit(settings)
    app = create_app(settings)
    inner = app.router.lifespan_context
    app.router.lifespan_context = lambda a: demo_lifespan(a, inner, profiles, history_days=args.history,
                                                          interval=args.interval,
                                                          show_progress=not args.no_progress)
    base = f"http://{settings.host}:{settings.port}/ngsi-ld/v1"
    print(f"urbanmim: demo cities {', '.join(p.key for p in profiles)} in {settings.db}; serving on {base}/\n"
          f"  try: curl -s -H 'NGSILD-Tenant: {profiles[0].key}' -H 'Link: <{base}/jsonldContexts/"
          f"sdm-environment>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"' "
          f"'{base}/entities?type=AirQualityObserved&q=no2>30&options=keyValues'\n"
          f"  open: http://{settings.host}:{settings.port}/twin/ (the twin), /kpi/ (KPIs), /algorithms/ (MIM5), "
          f"/ogc/{profiles[0].key} (OGC API)", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
                loop="uvloop", http="httptools", timeout_graceful_shutdown=10)
    return 0
