-- urbanmim PostgreSQL schema, version 1 (see urbanmim/store/postgres.py for the why).
-- Every table carries the tenant key (tid) or hangs off a row that does: tenants are rows,
-- not schemas, so a new city costs one INSERT inside the write transaction.

CREATE TABLE tenants(tid serial PRIMARY KEY, name text UNIQUE NOT NULL);

-- state: one orjson document per entity (bytea: byte-exact, key order kept, no jsonb parse)
CREATE TABLE entities(rid bigserial PRIMARY KEY, tid int NOT NULL, id text NOT NULL, doc bytea NOT NULL,
    UNIQUE(tid, id));
-- pre-filter indexes; their primary keys end in rid so a type scan pages in rid order
CREATE TABLE etypes(tid int NOT NULL, type text NOT NULL, rid bigint NOT NULL, PRIMARY KEY(tid, type, rid));
CREATE INDEX etypes_rid ON etypes(rid);
CREATE TABLE eattrs(tid int NOT NULL, attr text NOT NULL, rid bigint NOT NULL, kinds text NOT NULL,
    PRIMARY KEY(tid, attr, rid));
CREATE INDEX eattrs_rid ON eattrs(rid);
-- bounding box of every GeoProperty value (exact predicates run in Shapely)
CREATE TABLE egeo(tid int NOT NULL, attr text NOT NULL, rid bigint NOT NULL, g geometry(Geometry, 4326) NOT NULL);
CREATE INDEX egeo_g ON egeo USING gist(g);
CREATE INDEX egeo_rid ON egeo(rid);

-- hosted JSON-LD contexts (global) and subscriptions (per tenant)
CREATE TABLE contexts(cid text PRIMARY KEY, url text NOT NULL, doc bytea NOT NULL, created_at text NOT NULL);
CREATE TABLE subscriptions(seq bigserial, tid int NOT NULL, id text NOT NULL, doc bytea NOT NULL,
    PRIMARY KEY(tid, id));

-- temporal history (times: epoch ms UTC; ds '' = default instance)
CREATE TABLE tentities(teid bigserial PRIMARY KEY, tid int NOT NULL, id text NOT NULL, doc bytea NOT NULL,
    UNIQUE(tid, id));
CREATE TABLE tinstances(iid bigserial PRIMARY KEY, tid int NOT NULL, teid bigint NOT NULL, attr text NOT NULL,
    ds text NOT NULL, ts bigint NOT NULL, created_at bigint, modified_at bigint, deleted_at bigint,
    num double precision, doc bytea NOT NULL);
CREATE INDEX tinstances_key ON tinstances(teid, attr, ts);
-- time-wide scans and retention (DELETE ... WHERE ts < x): rows arrive roughly in ts order
CREATE INDEX tinstances_ts ON tinstances USING brin(ts);
CREATE TABLE tbuckets(teid bigint NOT NULL, attr text NOT NULL, ds text NOT NULL, hour bigint NOT NULL,
    cnt int NOT NULL, ncnt int NOT NULL, sum double precision NOT NULL, sumsq double precision NOT NULL,
    vmin double precision, vmax double precision, PRIMARY KEY(teid, attr, ds, hour));

-- notification outbox (written in the entity's transaction) and delivery counters
CREATE TABLE outbox(seq bigserial PRIMARY KEY, tid int NOT NULL, sub_id text NOT NULL, payload bytea NOT NULL);
CREATE INDEX outbox_sub ON outbox(tid, sub_id, seq);
CREATE TABLE substatus(tid int NOT NULL, id text NOT NULL, doc bytea NOT NULL, PRIMARY KEY(tid, id));
