-- ops/bench/nightly: the small tenant every benchmark tenant is cloned from.
-- psql -v rows=N: N orders, N/10 customers, a few settings.
CREATE TABLE customers (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status      text NOT NULL CHECK (status IN ('open', 'paid', 'shipped', 'cancelled')),
    total_cents bigint NOT NULL,
    note        text NOT NULL DEFAULT '',
    meta        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC);
CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);

INSERT INTO customers (email, name)
SELECT 'customer' || g || '@example.com', 'Customer ' || g FROM generate_series(1, greatest(:rows / 10, 1)) g;
INSERT INTO orders (customer_id, status, total_cents, note, meta, created_at)
SELECT 1 + g % greatest(:rows / 10, 1),
       (ARRAY['open', 'paid', 'shipped', 'cancelled'])[1 + g % 4],
       (g * 7919) % 100000,
       'Order ' || g || ': ' || repeat(md5(g::text), 2),
       jsonb_build_object('items', 1 + g % 5, 'channel', (ARRAY['web', 'app', 'phone'])[1 + g % 3]),
       now() - make_interval(hours => g)
FROM generate_series(1, :rows) g;
INSERT INTO settings VALUES ('timezone', 'UTC'), ('currency', 'EUR'), ('language', 'en');
VACUUM ANALYZE;
