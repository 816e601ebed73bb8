-- Run once by the postgres image on an empty data directory (docker-compose.yml).
-- `gather` (POSTGRES_USER) owns the schema and runs migrations
-- (GATHER_MIGRATE_DATABASE_URL); `gather_app` is the runtime role
-- (GATHER_DATABASE_URL): after `gather migrate` it may only read and append the log.
-- Change both passwords for anything but a local trial.
CREATE ROLE gather_app LOGIN PASSWORD 'gather_app';
GRANT CONNECT ON DATABASE gather TO gather_app;
