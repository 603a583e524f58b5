"""Every setting of the platform, declared once: name, default, help.

Read from (lowest to highest precedence) the defaults here, a TOML file given with
``--config`` / ``URBANMIM_CONFIG``, environment variables ``URBANMIM_<NAME>`` and CLI
flags. ``docs/settings.md`` documents each one; ``tests/test_settings.py`` fails when a
setting is missing from it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class Settings:
    host: str = setting("127.0.0.1", "Address to listen on.")
    port: int = setting(1026, "TCP port of the NGSI-LD API (1026 is the NGSI-LD convention).")
    db: str = setting("urbanmim.db", "Storage target: a SQLite file path (created if missing), or a "
                                     "postgresql://user@host:port/dbname URL (optional ?schema=name).")
    sqlite_synchronous: str = setting("FULL", "SQLite PRAGMA synchronous: FULL survives power loss, NORMAL "
                                              "survives process crashes only (faster).")
    pg_pool_min: int = setting(2, "PostgreSQL: connections each process keeps open in its pool.")
    pg_pool_max: int = setting(10, "PostgreSQL: most connections one process opens (N processes use N times "
                                   "this; keep the total under the server's max_connections).")
    pg_pool_timeout: float = setting(30.0, "PostgreSQL: seconds a request waits for a free pooled connection "
                                           "before failing with a 500.")
    max_body_bytes: int = setting(1_048_576, "Largest request body for single-entity requests (413 above).")
    max_batch_bytes: int = setting(64 * 1_048_576, "Largest request body for batch operations (413 above).")
    max_limit: int = setting(1000, "Largest page size a query may ask for (403 TooManyResults above).")
    context_timeout: float = setting(5.0, "Seconds to wait for a remote @context before LdContextNotAvailable.")
    log_level: str = setting("info", "Logging level (debug, info, warning, error).")
    mqtt_url: str = setting("", "MQTT broker the device agent subscribes to, e.g. mqtt://127.0.0.1:1883 (mqtts:// "
                                "for TLS, user:password@ allowed). Empty: no MQTT ingestion (HTTP ingestion and "
                                "provisioning under /iot/v1 always work). An unreachable broker is retried in the "
                                "background.")
    mqtt_client_id: str = setting("", "MQTT client id of the agent's persistent session. Empty: derived from `db`, "
                                      "so a restarted server resumes its own session.")
    mqtt_prefix: str = setting("urbanmim", "Topic prefix: devices publish to {prefix}/[{tenant}/]{apikey}/{deviceId}"
                                           "/attrs.")
    mqtt_session_expiry: int = setting(604800, "Seconds the broker keeps the agent's session (and queues its QoS-1 "
                                               "messages) while the server is down.")
    mqtt_receive_maximum: int = setting(65535, "Most unacknowledged QoS-1 messages the broker may send the agent "
                                               "at once (MQTT 5 Receive Maximum).")
    ingest_linger_ms: float = setting(2.0, "Milliseconds the agent waits for more measurements before writing a "
                                           "batch (one transaction per batch).")
    ingest_max_batch: int = setting(2000, "Most measurements written in one ingestion batch.")

    @classmethod
    def load(cls, config: str | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        path = config or os.environ.get("URBANMIM_CONFIG")
        if path:
            values.update(tomllib.loads(Path(path).read_text()))
        for f in fields(cls):
            env = os.environ.get(f"URBANMIM_{f.name.upper()}")
            if env is not None:
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        out = cls()
        for f in fields(cls):
            if f.name in values:
                caster = type(getattr(out, f.name))
                setattr(out, f.name, caster(values[f.name]))
        return out

    @classmethod
    def documented(cls) -> list[tuple[str, Any, str]]:
        return [(f.name, f.default, f.metadata["help"]) for f in fields(cls)]
