"""The device agent as a platform component: /iot/v1 routes, a cache listener, the MQTT task.

``install`` (before the store opens) builds the registry, the ingestion pipeline and the
MQTT agent, registers the device-cache invalidation as a store change listener (and
after-commit hook where the backend has one), and mounts ``/iot/v1`` at the root of the
app — component routes are otherwise mounted under ``/ngsi-ld/v1``, which is not where
these non-NGSI-LD operations belong. ``start`` runs the batcher and, only when
``mqtt_url`` is set, the MQTT loop (which retries in the background while the broker is
unreachable, so the platform starts without one). ``stop`` stops reading MQTT, commits
and acknowledges what was received, then stops the batcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.routing import Mount

from urbanmim.components import Component

from .devices import DeviceRegistry
from .mqtt import MqttAgent, default_client_id
from .pipeline import Ingestor


@dataclass
class Agent:
    registry: DeviceRegistry
    ingestor: Ingestor
    mqtt: MqttAgent | None


def _install(app: Any) -> None:
    from .http import routes

    settings, store = app.state.settings, app.state.store
    registry = DeviceRegistry(store, app.state.entities)
    ingestor = Ingestor(registry, app.state.entities, linger=max(0.0, settings.ingest_linger_ms) / 1000,
                        max_batch=max(1, settings.ingest_max_batch),
                        recorder=lambda: getattr(app.state, "temporal_recorder", None))
    mqtt = None
    if settings.mqtt_url:
        mqtt = MqttAgent(ingestor, settings.mqtt_url, client_id=settings.mqtt_client_id or default_client_id(
            settings.db), prefix=settings.mqtt_prefix, session_expiry=settings.mqtt_session_expiry,
            receive_maximum=max(1, min(65535, settings.mqtt_receive_maximum)))
    app.state.iot_agent = Agent(registry, ingestor, mqtt)
    store.listeners.append(registry.listener)
    hooks = getattr(store, "after_commit", None)
    if isinstance(hooks, list):
        hooks.append(registry.after_commit)
    if not any(isinstance(r, Mount) and r.path == "/iot/v1" for r in app.router.routes):
        app.router.routes.append(Mount("/iot/v1", routes=list(routes)))


async def _start(app: Any) -> None:
    agent: Agent = app.state.iot_agent
    agent.ingestor.start()
    if agent.mqtt is not None:
        agent.mqtt.start()


async def _stop(app: Any) -> None:
    agent: Agent = app.state.iot_agent
    if agent.mqtt is not None:
        await agent.mqtt.stop()
    await agent.ingestor.stop()


def component() -> Component:
    return Component(name="iot-agent", install=_install, start=_start, stop=_stop)
