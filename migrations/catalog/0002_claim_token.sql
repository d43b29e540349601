-- A fencing token that is new for every claim and never reused: every write
-- an attempt makes (heartbeat, progress, result) must present it. Unlike the
-- attempt number it survives `jobs retry`, which resets attempts.
ALTER TABLE jobs ADD COLUMN claim_token uuid;
