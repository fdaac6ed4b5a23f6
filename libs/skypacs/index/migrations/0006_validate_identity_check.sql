-- SkyPACS index, version 6: validate the identity check of version 5 on the rows
-- written before it. In a transaction of its own this takes only a SHARE UPDATE
-- EXCLUSIVE lock: stores, queries and retrieves go on while the table is read.
ALTER TABLE instances VALIDATE CONSTRAINT instances_identity_known;
