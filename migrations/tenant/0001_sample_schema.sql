-- Sample tenant schema: what a freshly provisioned tenant database holds.
-- Applications replace this directory with their own migrations.
CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id          bigserial PRIMARY KEY,
    owner_id    bigint NOT NULL REFERENCES users (id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE activity_log (
    id          bigserial PRIMARY KEY,
    user_id     bigint REFERENCES users (id),
    action      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_log_created_at ON activity_log (created_at);
