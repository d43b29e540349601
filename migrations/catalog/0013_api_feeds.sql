-- The HTTP API's feeds and replays.
--
-- Idempotency keys: a POST with `Idempotency-Key` is answered once; a repeat
-- with the same key (scoped to the token that sent it) and the same request
-- gets the stored answer, a different request 422, one still running 409.
-- Rows older than a day are deleted by the API as it goes.
CREATE TABLE api_idempotency (
    token_key     text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    status        smallint,
    body          bytea,
    content_type  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (token_key, key)
);
CREATE INDEX api_idempotency_created ON api_idempotency (created_at);

-- GET /v1/audit pages newest first, per tenant or for all.
CREATE INDEX audit_log_tenant_id ON audit_log (tenant_id, id DESC);

-- GET /v1/events pages the event rows of the outbox in id order, per tenant or for all.
CREATE INDEX outbox_exchange_id ON outbox (exchange, id);
CREATE INDEX outbox_exchange_tenant_id ON outbox (exchange, (payload->>'tenant'), id);
