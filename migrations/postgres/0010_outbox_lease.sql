-- The mail sender claims outbox rows with a lease (FOR UPDATE SKIP LOCKED), so two
-- notifier processes never deliver one row twice; a failed delivery is retried after a
-- growing delay (the lease doubles as the retry time).
ALTER TABLE email_outbox ADD COLUMN claimed_until timestamptz;
