-- SkyPACS index, version 2: what QIDO-RS searches need (PS3.18 §10.6, PS3.4 C.2.2.2).
-- Text folding for fuzzy person-name matching, value extraction from DICOM JSON,
-- administrator-defined query attributes filled by a trigger, and the indexes
-- behind the common study-list queries.

CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Case- and accent-folded text. unaccent() is only STABLE (its dictionary could be
-- changed); naming the dictionary makes the result fixed, so the wrapper may be
-- IMMUTABLE and used in expression indexes.
CREATE FUNCTION skypacs_fold(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, value)) $$;

-- Every value of one DICOM JSON attribute as text (PS3.18 F.2). A person name is
-- its component groups joined by '=', as in the DICOM string encoding (PS3.5 6.2).
CREATE FUNCTION skypacs_json_values(element jsonb) RETURNS SETOF text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE jsonb_typeof(v)
                   WHEN 'object' THEN rtrim(concat_ws('=', coalesce(v ->> 'Alphabetic', ''),
                       coalesce(v ->> 'Ideographic', ''), coalesce(v ->> 'Phonetic', '')), '=')
                   ELSE v #>> '{}'
               END
        FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(element -> 'Value') = 'array' THEN element -> 'Value'
                 ELSE '[]'::jsonb END) AS v
        WHERE jsonb_typeof(v) <> 'null'
    $$;

-- The items of a DICOM JSON sequence attribute (none when absent or empty).
CREATE FUNCTION skypacs_items(element jsonb) RETURNS SETOF jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT item FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(element -> 'Value') = 'array' THEN element -> 'Value'
                 ELSE '[]'::jsonb END) AS item
        WHERE jsonb_typeof(item) = 'object'
    $$;

-- DICOM TM and DA values normalised for comparison (PS3.5 6.2): colons and dots of
-- older encodings removed, the time padded to HHMMSS so that text order is time order.
CREATE FUNCTION skypacs_time(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$
        SELECT rpad(split_part(replace(value, ':', ''), '.', 1), 6, '0')
               || CASE WHEN position('.' IN value) > 0
                       THEN '.' || split_part(replace(value, ':', ''), '.', 2) ELSE '' END
    $$;

-- A date and an optional time as one DT-like text value (combined range matching,
-- PS3.4 C.2.2.2.5.1).
CREATE FUNCTION skypacs_datetime(date_value text, time_value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT replace(date_value, '.', '') || coalesce(skypacs_time(time_value), '') $$;

-- Administrator-defined query attributes (settings ``qido.extra_query_tags``).
-- ``skypacs reindex`` synchronises this list and backfills the values; the
-- trigger below fills them for every instance stored afterwards.
CREATE TABLE extra_query_tags (
    tag text PRIMARY KEY CHECK (tag ~ '^[0-9A-F]{8}$')
);

CREATE TABLE extra_query_values (
    instance_pk bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    series_pk   bigint NOT NULL,
    study_pk    bigint NOT NULL,
    tag         text NOT NULL,
    value       text NOT NULL
);
CREATE INDEX extra_query_values_lookup_idx ON extra_query_values (tag, value text_pattern_ops);
CREATE INDEX extra_query_values_instance_idx ON extra_query_values (instance_pk);
CREATE INDEX extra_query_values_series_idx ON extra_query_values (series_pk);
CREATE INDEX extra_query_values_study_idx ON extra_query_values (study_pk);

CREATE FUNCTION skypacs_index_extra_values() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'stored' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'stored') THEN
        INSERT INTO extra_query_values (instance_pk, series_pk, study_pk, tag, value)
        SELECT NEW.id, NEW.series_pk, NEW.study_pk, t.tag, v.value
        FROM extra_query_tags t
        CROSS JOIN LATERAL skypacs_json_values(NEW.metadata -> t.tag) AS v(value);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER instances_extra_query_values
    AFTER INSERT OR UPDATE OF status ON instances
    FOR EACH ROW EXECUTE FUNCTION skypacs_index_extra_values();

-- Study lists: the default order (newest first, id breaks ties) and date ranges.
-- The included columns let a search filter on modalities and patient name while
-- walking this index in result order without reading the table (index-only), so
-- a page costs about limit / selectivity index entries whatever the index size.
CREATE INDEX studies_listing_idx ON studies
    (study_date DESC NULLS LAST, study_time DESC NULLS LAST, id DESC)
    INCLUDE (num_instances, modalities, patient_name);
CREATE INDEX studies_patient_id_idx ON studies (patient_id text_pattern_ops);
CREATE INDEX studies_accession_idx ON studies (accession_number text_pattern_ops);
CREATE INDEX studies_study_id_idx ON studies (study_id);
CREATE INDEX studies_modalities_idx ON studies USING gin (modalities);
-- Person names: wildcard (case-insensitive regular expressions) and fuzzy matching.
CREATE INDEX studies_patient_name_trgm_idx ON studies USING gin (patient_name gin_trgm_ops);
-- The folded name is stored, so that rechecking a fuzzy match does not unaccent
-- every candidate row again.
ALTER TABLE studies ADD COLUMN patient_name_folded text
    GENERATED ALWAYS AS (skypacs_fold(patient_name)) STORED;
CREATE INDEX studies_patient_name_fold_idx ON studies
    USING gin (patient_name_folded gin_trgm_ops);
CREATE INDEX studies_referring_trgm_idx ON studies
    USING gin (referring_physician_name gin_trgm_ops);
CREATE INDEX studies_description_trgm_idx ON studies USING gin (study_description gin_trgm_ops);

CREATE INDEX series_listing_idx ON series (study_pk, series_number, id);
CREATE INDEX series_modality_idx ON series (modality);
CREATE INDEX instances_listing_idx ON instances (series_pk, instance_number, id)
    WHERE status = 'stored';
CREATE INDEX instances_sop_class_idx ON instances (sop_class_uid) WHERE status = 'stored';
