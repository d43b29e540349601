-- The scheduler: one row per schedule and fire time (so a firing happens
-- once, whoever leads), and an index that serves both exact dedupe keys
-- (any status: a firing's job is never written twice) and their prefixes
-- (overlap: a tenant's previous run of the same schedule still live).
CREATE TABLE schedule_firings (
    schedule     text NOT NULL,
    fire_at      timestamptz NOT NULL,
    status       text NOT NULL CHECK (status IN ('fanning_out', 'done', 'missed')),
    jobs         integer NOT NULL DEFAULT 0,
    skipped      integer NOT NULL DEFAULT 0,
    leader       text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (schedule, fire_at)
);

CREATE INDEX jobs_dedupe_key_pattern ON jobs (dedupe_key text_pattern_ops) WHERE dedupe_key IS NOT NULL;
