-- The mail sender claims outbox rows with a lease; see the Postgres migration.
ALTER TABLE email_outbox ADD COLUMN claimed_until TEXT;
