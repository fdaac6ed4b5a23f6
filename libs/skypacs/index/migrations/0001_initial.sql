-- SkyPACS index, version 1: the patient/study/series/instance hierarchy, the
-- two-phase instance status, and the outbox that doubles as the change feed.

CREATE TABLE patients (
    id              bigserial PRIMARY KEY,
    patient_id      text NOT NULL DEFAULT '',
    issuer          text NOT NULL DEFAULT '',
    patient_name    text,
    birth_date      text,
    sex             text,
    attrs           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (patient_id, issuer)
);

CREATE TABLE studies (
    id                       bigserial PRIMARY KEY,
    study_uid                text NOT NULL UNIQUE,
    patient_pk               bigint NOT NULL REFERENCES patients (id),
    -- Patient attributes repeated here so study lists need no join.
    patient_id               text NOT NULL DEFAULT '',
    patient_name             text,
    patient_birth_date       text,
    patient_sex              text,
    study_date               text,
    study_time               text,
    accession_number         text,
    study_id                 text,
    study_description        text,
    referring_physician_name text,
    -- DICOM JSON of the study-level attributes (PS3.18 F.2), for includefield.
    attrs                    jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Aggregates kept current in the same transaction as each instance write.
    num_series               integer NOT NULL DEFAULT 0,
    num_instances            integer NOT NULL DEFAULT 0,
    modalities               text[] NOT NULL DEFAULT '{}',
    sop_classes              text[] NOT NULL DEFAULT '{}',
    total_bytes              bigint NOT NULL DEFAULT 0,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    last_access_at           timestamptz
);
CREATE INDEX studies_patient_pk_idx ON studies (patient_pk);

CREATE TABLE series (
    id                bigserial PRIMARY KEY,
    series_uid        text NOT NULL UNIQUE,
    study_pk          bigint NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    modality          text,
    series_number     integer,
    series_description text,
    series_date       text,
    series_time       text,
    body_part_examined text,
    attrs             jsonb NOT NULL DEFAULT '{}'::jsonb,
    num_instances     integer NOT NULL DEFAULT 0,
    total_bytes       bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_study_pk_idx ON series (study_pk);

-- Each stored version of an instance gets an immutable version number; blob keys
-- are built from it, never from client-supplied UIDs.
CREATE SEQUENCE instance_version_seq;

CREATE TABLE instances (
    id                  bigserial PRIMARY KEY,
    version             bigint NOT NULL UNIQUE DEFAULT nextval('instance_version_seq'),
    sop_instance_uid    text NOT NULL,
    sop_class_uid       text NOT NULL,
    study_uid           text NOT NULL,
    series_uid          text NOT NULL,
    -- Linked to the hierarchy when the instance is flipped to 'stored'; a
    -- 'creating' row is only a claim on a blob key.
    series_pk           bigint REFERENCES series (id) ON DELETE CASCADE,
    study_pk            bigint REFERENCES studies (id) ON DELETE CASCADE,
    -- creating: row exists, blob being written; stored: visible to queries;
    -- deleted: hidden, blob awaiting cleanup; replaced: superseded by a newer version.
    status              text NOT NULL DEFAULT 'creating'
                        CHECK (status IN ('creating', 'stored', 'deleted', 'replaced')),
    instance_number     integer,
    transfer_syntax_uid text NOT NULL,
    blob_key            text NOT NULL UNIQUE,
    size_bytes          bigint,
    sha256              bytea,
    number_of_frames    integer,
    -- Where the pixel data lies in the blob, recorded at ingest for ranged frame
    -- reads: per frame, the [offset, length] of each fragment payload (PS3.5
    -- A.4) or the single range of a native frame; NULL when frames must be found
    -- by decoding the object.
    pixel_data_offset   bigint,
    frame_ranges        jsonb,
    -- Byte ranges of other bulk data values, keyed by attribute path.
    bulk_ranges         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The instance as DICOM JSON with bulk data values replaced by references.
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    tier                text NOT NULL DEFAULT 'hot',
    created_at          timestamptz NOT NULL DEFAULT now(),
    stored_at           timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_access_at      timestamptz,
    CHECK (status = 'creating' OR (series_pk IS NOT NULL AND study_pk IS NOT NULL))
);
-- At most one visible version per SOP Instance UID; concurrent uploads race on
-- this index and the loser reconciles (UniqueViolationError), never check-then-insert.
CREATE UNIQUE INDEX instances_one_stored_idx ON instances (sop_instance_uid)
    WHERE status = 'stored';
CREATE INDEX instances_uid_idx ON instances (sop_instance_uid);
CREATE INDEX instances_series_idx ON instances (series_pk) WHERE status = 'stored';
CREATE INDEX instances_study_idx ON instances (study_pk) WHERE status = 'stored';
CREATE INDEX instances_creating_idx ON instances (created_at) WHERE status = 'creating';
CREATE INDEX instances_deleted_idx ON instances (updated_at) WHERE status IN ('deleted', 'replaced');

-- The outbox: written in the same transaction as the change it describes.
-- txid lets the sequencer hand out feed positions only to rows whose writers
-- have all committed, so the change feed (feed_seq) is read as a growing prefix
-- with no row appearing behind a position a reader has already passed.
CREATE TABLE outbox (
    seq            bigserial PRIMARY KEY,
    txid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid NOT NULL UNIQUE,
    type           text NOT NULL,
    source         text NOT NULL,
    subject        text,
    partition_key  text NOT NULL,
    time           timestamptz NOT NULL DEFAULT now(),
    data           jsonb NOT NULL DEFAULT '{}'::jsonb,
    feed_seq       bigint UNIQUE
);
CREATE SEQUENCE outbox_feed_seq;
CREATE INDEX outbox_unsequenced_idx ON outbox (seq) WHERE feed_seq IS NULL;

-- Progress of each outbox reader (Kafka relay, in-process bus, ...), by feed_seq.
CREATE TABLE outbox_cursors (
    name        text PRIMARY KEY,
    position    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
