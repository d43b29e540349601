-- ops/bench/lib/backup-gen-batch.sql — used by ops/bench/backup.
-- One batch of generated data (run with psql -v n=TICKETS, after
-- backup-gen-setup.sql): n/20 users, n/200 projects, n tickets with 1-6
-- comments each and 4 activity_log rows each. Several sessions may run it
-- at once: each batch references only the users and projects it created.
-- About 2.5 KB of table data per ticket (plus indexes).
\set ON_ERROR_STOP 1
SET synchronous_commit = off;

CREATE TEMP TABLE batch_users AS
WITH ins AS (
    INSERT INTO users (id, email, name, created_at)
    SELECT id,
           lower(fn) || CASE WHEN random() < 0.5 THEN '.' ELSE '_' END || lower(ln) || id || '@' || dom,
           fn || ' ' || ln,
           now() - random() * interval '1500 days'
    FROM (
        SELECT nextval('users_id_seq') AS id,
               bench_gen.pick(bench_gen.first_names(), 1.5) AS fn,
               bench_gen.pick(bench_gen.last_names(), 1.5) AS ln,
               bench_gen.pick(bench_gen.domains(), 2) AS dom
        FROM generate_series(1, greatest(1, :n / 20))
    ) s
    RETURNING id, name
)
SELECT array_agg(id) AS ids, array_agg(name) AS names FROM ins;

CREATE TEMP TABLE batch_projects AS
WITH ins AS (
    INSERT INTO projects (owner_id, name, created_at)
    SELECT u.ids[1 + floor(random() * cardinality(u.ids))::int],
           initcap(bench_gen.pick(bench_gen.words(), 1.3) || ' ' || bench_gen.pick(bench_gen.words(), 1.3)) || ' ' ||
               bench_gen.pick(ARRAY['Portal', 'API', 'Migration', 'Website', 'Mobile App', 'Rollout', 'Onboarding',
                                    'Integration', 'Dashboard', 'Billing', 'Data Warehouse', 'Support Desk']),
           now() - random() * interval '1200 days'
    FROM batch_users u, generate_series(1, greatest(1, :n / 200))
    RETURNING id
)
SELECT array_agg(id) AS ids FROM ins;

WITH v AS (
    SELECT bench_gen.words() AS w, u.ids AS uids, u.names AS unames, p.ids AS pids
    FROM batch_users u, batch_projects p
),
src AS (
    SELECT v.*, 1 + floor(random() * cardinality(v.uids))::int AS ui,
           now() - random() * interval '1400 days' AS created,
           random() AS r
    FROM v, generate_series(1, :n)
),
t AS (
    INSERT INTO tickets (project_id, reporter_id, subject, body, status, priority, tags, metadata,
                         created_at, updated_at, resolved_at)
    SELECT src.pids[1 + floor(random() * cardinality(src.pids))::int],
           src.uids[src.ui],
           rtrim(bench_gen.sentences(src.w, 1), '.?!'),
           bench_gen.pick(ARRAY['Hi', 'Hello', 'Hi team', 'Dear support', 'Good morning', 'Hey']) || ',' || E'\n\n' ||
               bench_gen.prose(src.w, 1 + floor(random() * 4)::int) || E'\n\n' ||
               bench_gen.pick(ARRAY['Thanks', 'Thank you', 'Best regards', 'Kind regards', 'Cheers', 'Regards']) ||
               ',' || E'\n' || src.unames[src.ui] ||
               CASE WHEN random() < 0.3
                    THEN E'\n' || bench_gen.pick(ARRAY['Operations Manager', 'Head of Finance', 'IT Administrator',
                              'Customer Success Lead', 'Software Engineer', 'Office Manager', 'CTO'])
                    ELSE '' END,
           CASE WHEN src.r < 0.05 THEN 'new' WHEN src.r < 0.20 THEN 'open' WHEN src.r < 0.30 THEN 'pending'
                WHEN src.r < 0.33 THEN 'on_hold' WHEN src.r < 0.60 THEN 'solved' ELSE 'closed' END,
           1 + floor(random() ^ 1.8 * 4)::smallint,
           ARRAY(SELECT DISTINCT bench_gen.pick(ARRAY['billing', 'login', 'bug', 'feature-request', 'api', 'export',
                     'import', 'performance', 'mobile', 'sso', 'invoice', 'refund', 'onboarding', 'integration',
                     'data-loss', 'outage', 'question', 'security', 'permissions', 'notifications'], 1.6)
                 FROM generate_series(1, 1 + floor(random() * 4)::int) WHERE src.r IS NOT NULL),
           jsonb_build_object(
               'channel', bench_gen.pick(ARRAY['email', 'web', 'chat', 'phone', 'api', 'mobile'], 1.5),
               'locale', bench_gen.pick(ARRAY['en-US', 'en-GB', 'de-DE', 'fr-FR', 'es-ES', 'nl-NL', 'pt-BR', 'ja-JP'], 2),
               'browser', bench_gen.pick(ARRAY['Chrome 124', 'Firefox 126', 'Safari 17.4', 'Edge 124', 'Chrome 123',
                                               'Safari 16.6', 'Samsung Internet 24'], 1.5),
               'os', bench_gen.pick(ARRAY['Windows 11', 'macOS 14.4', 'Windows 10', 'iOS 17.4', 'Android 14',
                                          'Ubuntu 22.04', 'ChromeOS'], 1.5),
               'ip', '10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.' ||
                     floor(random() * 256)::int,
               'sla_hours', (ARRAY[4, 8, 24, 72])[1 + floor(random() * 4)::int],
               'first_response_minutes', floor(random() ^ 2 * 2880)::int,
               'satisfaction', CASE WHEN random() < 0.4 THEN 1 + floor(random() * 5)::int END,
               'order_id', CASE WHEN random() < 0.5 THEN 'ORD-' || lpad(floor(random() * 10000000)::int::text, 7, '0') END,
               'custom', jsonb_build_object(
                   'region', bench_gen.pick(ARRAY['eu-west', 'us-east', 'us-west', 'ap-south', 'eu-central']),
                   'plan', bench_gen.pick(ARRAY['starter', 'team', 'business', 'enterprise'], 1.4),
                   'seats', 1 + floor(random() ^ 3 * 500)::int,
                   'escalated', random() < 0.1)),
           src.created,
           src.created + random() * interval '30 days',
           CASE WHEN src.r >= 0.33 THEN src.created + random() * interval '20 days' END
    FROM src
    RETURNING id, reporter_id, created_at
),
c AS (
    INSERT INTO ticket_comments (ticket_id, author_id, body, internal, created_at)
    SELECT t.id,
           CASE WHEN random() < 0.5 THEN t.reporter_id ELSE v.uids[1 + floor(random() * cardinality(v.uids))::int] END,
           bench_gen.prose(v.w, 1 + floor(random() ^ 2 * 3)::int),
           random() < 0.2,
           t.created_at + random() * interval '10 days'
    FROM t, v, generate_series(1, 1 + (t.id * 7919 % 6)::int)
    RETURNING 1
)
INSERT INTO activity_log (user_id, action, created_at)
SELECT CASE WHEN k = 1 THEN t.reporter_id ELSE v.uids[1 + floor(random() * cardinality(v.uids))::int] END,
       CASE k WHEN 1 THEN 'ticket.created #' || t.id
              ELSE bench_gen.pick(ARRAY['ticket.viewed', 'ticket.updated status', 'ticket.assigned', 'comment.added',
                                        'ticket.tagged', 'ticket.priority_changed', 'attachment.uploaded',
                                        'ticket.merged', 'sla.warning'], 1.5) || ' #' || t.id END ||
           CASE WHEN random() < 0.3 THEN ' via ' || bench_gen.pick(ARRAY['web', 'api', 'mobile', 'email', 'automation']) ELSE '' END,
       t.created_at + (k - 1) * random() * interval '5 days'
FROM t, v, generate_series(1, 4) k;
