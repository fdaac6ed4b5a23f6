-- SkyPACS index, version 4: study lists at scale.
-- The listing index (the study-list order) also carries the folded patient name,
-- so that a fuzzy name search keeping many studies walks it in result order
-- without reading the table (index-only) and stops at the end of the page, as
-- wildcard name, date range and modality searches already do. The new index is
-- built before the old one is dropped, so reads keep their index meanwhile.
CREATE INDEX studies_listing_v4_idx ON studies
    (study_date DESC NULLS LAST, study_time DESC NULLS LAST, id DESC)
    INCLUDE (num_instances, modalities, patient_name, patient_name_folded);
DROP INDEX studies_listing_idx;
ALTER INDEX studies_listing_v4_idx RENAME TO studies_listing_idx;
