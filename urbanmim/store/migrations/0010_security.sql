-- MIM6 (urbanmim/security/): the append-only audit log and platform secrets.
-- Numbered 0010 so it cannot collide with the storage work's next migrations (the runner allows gaps).

CREATE TABLE audit(seq bigserial PRIMARY KEY, ts text NOT NULL, tenant text NOT NULL, subject text NOT NULL,
    action text NOT NULL, decision text NOT NULL, entities text[] NOT NULL, doc bytea NOT NULL);
CREATE INDEX audit_tenant_ts ON audit(tenant, ts);
CREATE INDEX audit_subject_ts ON audit(subject, ts);
CREATE INDEX audit_entities ON audit USING gin(entities);

-- append-only: no UPDATE or DELETE through any connection of the platform
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

CREATE TABLE secrets(name text PRIMARY KEY, value bytea NOT NULL);
