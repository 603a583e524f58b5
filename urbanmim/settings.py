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
    forwarded_allow_ips: str = setting("127.0.0.1,::1", "Reverse proxies (comma-separated addresses or networks, "
                                                        "`*` for any) whose X-Forwarded-Proto/-For are trusted: "
                                                        "https links and the client address behind a proxy.")
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
    ogc_default_limit: int = setting(10, "OGC API Features: features per /items page when the client gives no limit.")
    ogc_max_limit: int = setting(10000, "OGC API Features: largest limit a client may ask for (400 above).")
    ogc_cache_seconds: float = setting(30.0, "OGC API Features: longest time a cached collection list or extent is "
                                             "used (this process's own writes refresh them at once).")
    kpi_schedule: float = setting(3600.0, "Seconds between two checks of the KPI scheduler (computes each KPI "
                                          "of each tenant when its period's value is missing or its period has "
                                          "closed, see docs/kpis.md). 0: no scheduled computation.")
    twin_sse_queue: int = setting(1000, "Twin live updates: most entities one browser tab may have pending; a "
                                        "slower tab gets one 'resync' event instead (see docs/twin.md).")
    sharing_flush_interval: float = setting(10.0, "MIM3: seconds between two stores of the agreements' read counts "
                                                  "(the ODRL count constraint, usage reports). 0: only at shutdown.")
    sharing_sync_interval: float = setting(0.0, "MIM3 on PostgreSQL with several processes: seconds between two full "
                                                "reloads of offers and agreements, a safety net only (another "
                                                "process's change is announced and in force here before it answers, "
                                                "docs/postgres.md). 0: never.")
    consent_sync_interval: float = setting(0.0, "MIM4 on PostgreSQL with several processes: seconds between two full "
                                                "reloads of personal-data rules and consents, a safety net only "
                                                "(another process's change is announced and in force here before it "
                                                "answers, docs/postgres.md). 0: never.")
    secure: bool = setting(False, "MIM6: security on (also `urbanmim serve --secure`): every request is authenticated "
                                  "(bearer JWT or device API key), every read and write decided by roles, rules, "
                                  "agreements and consent, rate-limited per client and audited (docs/security.md).")
    insecure_public: bool = setting(False, "Allow security off on a non-loopback host (`--insecure-public`); without "
                                           "it an open broker refuses to listen beyond 127.0.0.1/::1.")
    public_tenants: str = setting("", "MIM6: comma-separated tenants anonymous callers may read (as role reader, "
                                      "with the reader rules); every other anonymous request is 401.")
    auth_issuers: str = setting("", "MIM6: trusted OIDC issuers, comma-separated, each `ISSUER` (JWKS found by OIDC "
                                    "discovery) or `ISSUER JWKS_URL`.")
    auth_audience: str = setting("urbanmim", "MIM6: the `aud` a bearer token must carry.")
    auth_dev_issuer: bool = setting(True, "MIM6: trust the built-in development issuer (`urbanmim token`; its key is "
                                          "kept in the database, its JWKS at /auth/v1/jwks.json). Turn off in "
                                          "production.")
    auth_jwks_ttl: float = setting(300.0, "MIM6: seconds an issuer's JWKS is cached (an unknown key id refreshes it "
                                          "early, at most every 30 s).")
    auth_jwks_timeout: float = setting(5.0, "MIM6: seconds to wait for an issuer's JWKS or OIDC discovery document.")
    rate_limit: float = setting(100.0, "MIM6, with security on: requests per second per client (token `azp`/`sub`, "
                                       "device key, or IP address for anonymous callers). 0: no limit.")
    rate_burst: float = setting(200.0, "MIM6: requests a client may make at once before `rate_limit` applies (429 "
                                       "with Retry-After).")
    audit_reads: bool = setting(True, "MIM6, with security on: also audit reads (retrieve, query, temporal, "
                                      "notifications); writes are always audited.")
    audit_flush_s: float = setting(1.0, "MIM6: seconds between two appends of buffered audit entries (reads, "
                                        "refusals); a crash loses at most this interval of them.")

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
                value = values[f.name]
                if caster is bool and isinstance(value, str):    # "false"/"0" from the environment are False
                    value = value.strip().lower() in ("1", "true", "yes", "on")
                setattr(out, f.name, caster(value))
        return out

    @classmethod
    def documented(cls) -> list[tuple[str, Any, str]]:
        return [(f.name, f.default, f.metadata["help"]) for f in fields(cls)]
