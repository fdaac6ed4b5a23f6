-- SkyPACS index, version 3: API keys and the audit trail.

-- Machine credentials. The key is shown once; only the SHA-256 of its 256-bit
-- random secret is kept (a random secret of that size needs no slow hash), and
-- key_id, the public part of the key, finds the row.
CREATE TABLE api_keys (
    id            bigserial PRIMARY KEY,
    key_id        text NOT NULL UNIQUE,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    secret_sha256 bytea NOT NULL CHECK (octet_length(secret_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- One live key per name; revoked keys keep their name for the audit trail.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Who accessed which patient data, when, from where, and how it ended.
CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    occurred_at      timestamptz NOT NULL,
    request_id       text,
    subject          text NOT NULL,
    key_name         text,
    auth_method      text NOT NULL,
    role             text,
    action           text NOT NULL,
    method           text NOT NULL,
    route            text NOT NULL,
    study_uid        text,
    series_uid       text,
    sop_instance_uid text,
    query            text,
    client_address   text,
    status           integer NOT NULL,
    outcome          text NOT NULL
);

CREATE INDEX audit_log_time ON audit_log (occurred_at);
CREATE INDEX audit_log_subject ON audit_log (subject, occurred_at);
CREATE INDEX audit_log_study ON audit_log (study_uid, occurred_at) WHERE study_uid IS NOT NULL;

-- Append-only: rows can be added, never changed or removed.
CREATE FUNCTION skypacs_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION skypacs_audit_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION skypacs_audit_append_only();
