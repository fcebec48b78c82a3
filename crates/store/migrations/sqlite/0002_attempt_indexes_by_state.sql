-- Baton's schema, version 2: each attempt index holds only the attempts of the state its
-- queries ask for. An attempt's entries then change only when it enters or leaves such a
-- state, not on every transition, so the commits of the runner protocol write fewer pages.
-- Queries that must not sort through the primary key name these indexes (INDEXED BY).

DROP INDEX attempts_queue;
DROP INDEX attempts_offer_deadline;
DROP INDEX attempts_lease_deadline;
CREATE INDEX attempts_queue ON attempts (queued_at, job_id, number) WHERE state = 'queued';
CREATE INDEX attempts_offer_deadline ON attempts (accept_deadline) WHERE state = 'offered';
CREATE INDEX attempts_lease_deadline ON attempts (lease_deadline) WHERE state = 'running';
