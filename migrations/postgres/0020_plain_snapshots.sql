-- Snapshots of the shapes before sealing (state version 1 of members and activities)
-- hold personal fields in clear; they are a cache, rebuilt from the log on the next
-- load (issue 13).
DELETE FROM snapshots WHERE (stream LIKE 'member-%' OR stream LIKE 'activity-%') AND state_version < 2;
