-- The W3C trace context of the span that enqueued a job (or the `traceparent`
-- header a foreign publisher sent), so the job's message, its retries and its
-- events continue one trace. NULL when trace export was off.
ALTER TABLE jobs ADD COLUMN trace_parent text CHECK (length(trace_parent) <= 128);
