# shellcheck shell=bash
# Sourced by ops/services. A second PostgreSQL cluster that speaks only TLS, for the
# catalog and tenant servers under `ops/services up --tls` and for tests/it/tls_postgres.rs:
#   cluster   $(pg_version)/landlord_tls, port 5433, listening on 127.0.0.1 and 127.0.0.2
#             (127.0.0.2 is not in the server certificate: the wrong-host-name test)
#   TLS       ssl = on with $TLS_DIR/server.pem (copied, with its key, into the cluster's
#             config directory: the postgres user cannot read $TLS_DIR), client
#             certificates checked against ca.pem
#   pg_hba    hostnossl ... reject (a plain connection is refused, so a success proves TLS);
#             role `landlord` (the client certificate's CN) only with a client certificate
#             (`cert`); every other role trusted over TLS from loopback
#   databases landlord (the catalog of `env --tls`)
#   log       log_connections = on, in /var/log/postgresql/postgresql-VER-landlord_tls.log
#             (LANDLORD_TEST_PG_TLS_LOG): each session's line says whether it used TLS
# Idempotent: rewrites its config files, restarts only when they changed, reuses a running
# cluster. Never touches the main cluster on 5432.

PG_TLS_CLUSTER=landlord_tls
PG_TLS_PORT=5433

pg_tls_dir() { echo "/etc/postgresql/$(pg_version)/$PG_TLS_CLUSTER"; }
pg_tls_exists() { pg_lsclusters -h 2>/dev/null | awk -v c="$PG_TLS_CLUSTER" '$2 == c { f = 1 } END { exit !f }'; }
pg_tls_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_TLS_PORT"; }
# psql over verified TLS, as the superuser (trusted over TLS).
pg_tls_sql() {
  PGSSLMODE=verify-full PGSSLROOTCERT="$TLS_DIR/ca.pem" \
    psql -h localhost -p "$PG_TLS_PORT" -U postgres -d postgres -w -X -qAt "$@"
}

# pg_tls_write FILE MODE OWNER CONTENT: write when different; returns 0 if it changed.
pg_tls_write() {
  local file=$1 mode=$2 owner=$3 content=$4
  if [[ -f $file ]] && [[ $(cat "$file") == "$content" ]]; then return 1; fi
  printf '%s\n' "$content" >"$file.tmp"
  chmod "$mode" "$file.tmp"
  chown "$owner" "$file.tmp"
  mv "$file.tmp" "$file"
}

postgres_tls_up() {
  local ver how dir changed=0
  have pg_createcluster || apt_install postgres-tls postgresql postgresql-client
  ver=$(pg_version)
  dir=$(pg_tls_dir)
  if pg_tls_exists; then how="reused cluster $ver/$PG_TLS_CLUSTER"
  else
    log "postgres-tls: pg_createcluster $ver $PG_TLS_CLUSTER --port $PG_TLS_PORT"
    pg_createcluster "$ver" "$PG_TLS_CLUSTER" --port "$PG_TLS_PORT" >&2 ||
      die "postgres-tls: pg_createcluster $ver $PG_TLS_CLUSTER failed"
    how="created cluster $ver/$PG_TLS_CLUSTER"
  fi
  mkdir -p "$dir/tls" "$dir/conf.d"
  pg_tls_write "$dir/tls/server.pem" 644 postgres:postgres "$(cat "$TLS_DIR/server.pem")" && changed=1
  pg_tls_write "$dir/tls/ca.pem" 644 postgres:postgres "$(cat "$TLS_DIR/ca.pem")" && changed=1
  # PostgreSQL refuses a key others can read: 0600, owned by postgres.
  pg_tls_write "$dir/tls/server.key" 600 postgres:postgres "$(cat "$TLS_DIR/server.key")" && changed=1
  pg_tls_write "$dir/conf.d/landlord-tls.conf" 644 postgres:postgres "# Written by ops/services (postgres-tls.sh); edits are overwritten.
port = $PG_TLS_PORT
listen_addresses = '127.0.0.1,127.0.0.2'
ssl = on
ssl_cert_file = '$dir/tls/server.pem'
ssl_key_file = '$dir/tls/server.key'
ssl_ca_file = '$dir/tls/ca.pem'
max_connections = 200
# Every session's TLS protocol in the log: tests read it to prove pg_dump/pg_restore used TLS.
log_connections = on" && changed=1
  pg_tls_write "$dir/pg_hba.conf" 640 postgres:postgres "# Written by ops/services (postgres-tls.sh); edits are overwritten.
local     all all                     peer
hostnossl all all      0.0.0.0/0      reject
hostnossl all all      ::/0           reject
hostssl   all landlord 127.0.0.0/8    cert
hostssl   all all      127.0.0.1/32   trust
hostssl   all all      127.0.0.2/32   trust" && changed=1
  if pg_tls_ready; then
    if ((changed)); then
      log "postgres-tls: configuration changed; restarting $ver/$PG_TLS_CLUSTER"
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_TLS_CLUSTER" restart >&2 ||
        die "postgres-tls: pg_ctlcluster $ver $PG_TLS_CLUSTER restart failed"
      how+=", restarted (new configuration)"
    else how+=", already running"; fi
  else
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_TLS_CLUSTER" start >&2 ||
      die "postgres-tls: pg_ctlcluster $ver $PG_TLS_CLUSTER start failed; see /var/log/postgresql/postgresql-$ver-$PG_TLS_CLUSTER.log"
    how+=", started"
  fi
  wait_for 60 pg_tls_ready || die "postgres-tls: not accepting connections on 127.0.0.1:$PG_TLS_PORT after 60 s"
  wait_for 10 pg_tls_sql -c 'select 1' ||
    die "postgres-tls: psql with sslmode=verify-full (CA $TLS_DIR/ca.pem) to localhost:$PG_TLS_PORT fails"
  if [[ -z $(pg_tls_sql -c "select 1 from pg_roles where rolname = 'landlord'") ]]; then
    pg_tls_sql -c 'create role landlord login createdb' || die "postgres-tls: cannot create role landlord"
  fi
  if [[ -z $(pg_tls_sql -c "select 1 from pg_database where datname = 'landlord'") ]]; then
    pg_tls_sql -c 'create database landlord' || die "postgres-tls: cannot create database landlord"
    how+=", created database landlord"
  fi
  note postgres-tls "$how; TLS only on 127.0.0.1:$PG_TLS_PORT (verify-full with $TLS_DIR/ca.pem ok)"
}

postgres_tls_down() {
  if pg_tls_exists && pg_tls_ready; then
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" "$PG_TLS_CLUSTER" stop >&2 ||
      log "postgres-tls: stopping $PG_TLS_CLUSTER failed"
    log "postgres-tls: stopped cluster $PG_TLS_CLUSTER (kept on disk)"
  else
    log "postgres-tls: not running; nothing to stop"
  fi
}

# The catalog (and so the `default` tenant server) on the TLS cluster, verified by name.
postgres_tls_env() {
  echo "export LANDLORD_DATABASE_URL='postgres://postgres@localhost:$PG_TLS_PORT/landlord?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem'"
}

# The TLS cluster without a database or parameters; tests add both (CA: LANDLORD_TEST_TLS_DIR).
postgres_tls_test_env() {
  echo "export LANDLORD_TEST_PG_TLS_URL=postgres://postgres@localhost:$PG_TLS_PORT"
  echo "export LANDLORD_TEST_PG_TLS_LOG=/var/log/postgresql/postgresql-$(pg_version)-$PG_TLS_CLUSTER.log"
}

TLS_SERVICES+=(postgres)
