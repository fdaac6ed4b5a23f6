-- SkyPACS index, version 5: claims taken in blocks.
-- A request reserves the 'creating' rows of its instances several at a time,
-- before it has parsed the instances they will hold, so a claim carries no
-- identity: the commit that flips the row to 'stored' fills it in. Every other
-- status still requires it. The check is added NOT VALID, which holds for
-- every row written from now on without reading the table under this
-- migration's exclusive lock; version 6 validates the existing rows.
ALTER TABLE instances
    ALTER COLUMN sop_instance_uid DROP NOT NULL,
    ALTER COLUMN sop_class_uid DROP NOT NULL,
    ALTER COLUMN study_uid DROP NOT NULL,
    ALTER COLUMN series_uid DROP NOT NULL,
    ALTER COLUMN transfer_syntax_uid DROP NOT NULL,
    ADD CONSTRAINT instances_identity_known CHECK (
        status = 'creating' OR (
            sop_instance_uid IS NOT NULL AND sop_class_uid IS NOT NULL
            AND study_uid IS NOT NULL AND series_uid IS NOT NULL
            AND transfer_syntax_uid IS NOT NULL
        )
    ) NOT VALID;
