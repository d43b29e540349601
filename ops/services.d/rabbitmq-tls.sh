# shellcheck shell=bash
# Sourced by ops/services. RabbitMQ over TLS (amqps://) for development and tests: a second
# RabbitMQ node of its own, landlord-tls@localhost, beside the machine's node on 5672 (which
# is left untouched). It has no plain listener, only TLS on 127.0.0.1:5671 and 127.0.0.2:5671
# (an address the server certificate does not name, for the wrong-host-name tests), presents
# $TLS_DIR/server.pem, asks for a client certificate (verify_peer) but does not require one,
# and lets guest/guest in from loopback (RabbitMQ's default).
#
# rabbit_node_up starts any such node (the cluster of the next issue starts three with it):
# it runs as root, with its data, logs, pid file and plugins file under $STATE/rabbitmq-NAME,
# its own distribution port, and the Erlang cookie of root's home, which the CLI tools run
# here as root share. Nothing here touches /etc/rabbitmq or the machine's node.

RABBIT_TLS_NAME=landlord-tls
RABBIT_TLS_PORT=5671
RABBIT_TLS_DIST_PORT=25671

# The real server scripts (Debian's /usr/sbin wrappers would `su rabbitmq`, who cannot
# read $STATE under root's home).
rabbit_tool() {
  if [[ -x /usr/lib/rabbitmq/bin/$1 ]]; then echo "/usr/lib/rabbitmq/bin/$1"
  else command -v "$1"; fi
}
rabbit_node() { echo "$1@localhost"; }
rabbit_node_dir() { echo "$STATE/rabbitmq-$1"; }
# rabbit_ctl NAME ARGS...: rabbitmqctl against node NAME, as root with root's cookie.
rabbit_ctl() {
  local name=$1; shift
  HOME=$HOME "$(rabbit_tool rabbitmqctl)" -n "$(rabbit_node "$name")" "$@"
}
rabbit_node_running() { rabbit_ctl "$1" -q status >/dev/null 2>&1; }
rabbit_node_started() { rabbit_ctl "$1" -q await_startup --timeout 10; }

# rabbit_node_up NAME DIST_PORT CONFIG: start RabbitMQ node NAME@localhost with CONFIG (the
# text of its rabbitmq.conf) unless it already runs; waits until it has started (120 s).
# Its distribution listens on 127.0.0.1:DIST_PORT only. Sets RABBIT_HOW for the summary.
rabbit_node_up() {
  rabbit_node_launch "$@"
  [[ $RABBIT_HOW == reused* ]] || rabbit_node_wait "$1"
}

# rabbit_node_wait NAME: wait until node NAME has booted (120 s), or die naming its logs.
rabbit_node_wait() {
  wait_for 120 rabbit_node_started "$1" ||
    die "rabbitmq: node $(rabbit_node "$1") not started after 120 s; see $(rabbit_node_dir "$1")/log/"
}

# rabbit_node_launch NAME DIST_PORT CONFIG: as rabbit_node_up, but returns as soon as the node's
# VM is launched, without waiting for it to boot: the nodes of a cluster must be launched
# together, since a node that was not the last of its cluster to stop waits for its peers.
rabbit_node_launch() {
  local name=$1 dist_port=$2 config=$3 dir
  dir=$(rabbit_node_dir "$name")
  have rabbitmq-server || [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] ||
    apt_install rabbitmq rabbitmq-server
  mkdir -p "$dir/mnesia" "$dir/log"
  printf '%s\n' "$config" >"$dir/rabbitmq.conf"
  [[ -s $dir/enabled_plugins ]] || echo '[].' >"$dir/enabled_plugins"
  # An env file of its own, so /etc/rabbitmq/rabbitmq-env.conf (NODENAME=…) does not apply.
  printf 'ERL_EPMD_ADDRESS=127.0.0.1\n' >"$dir/rabbitmq-env.conf"
  if rabbit_node_running "$name"; then
    RABBIT_HOW="reused (node $(rabbit_node "$name") already running)"
    return 0
  fi
  # A node still booting (or too busy to answer status) holds its distribution port: starting
  # a second one would fail in prelaunch and, exiting, delete the first one's pid file.
  if port_open "$dist_port"; then
    RABBIT_HOW="found (node $(rabbit_node "$name") holds port $dist_port; still starting)"
    return 0
  fi
  log "rabbitmq: starting node $(rabbit_node "$name") (state in $dir)"
  # RABBITMQ_NODE_PORT is left unset: it would add a plain listener the config turns off.
  env HOME="$HOME" \
    RABBITMQ_NODENAME="$(rabbit_node "$name")" \
    RABBITMQ_DIST_PORT="$dist_port" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    "$(rabbit_tool rabbitmq-server)" -detached >>"$dir/log/startup.log" 2>&1 ||
    die "rabbitmq: rabbitmq-server -detached for node $(rabbit_node "$name") failed; see $dir/log/"
  RABBIT_HOW="started (node $(rabbit_node "$name"))"
}

# rabbit_node_down NAME: stop node NAME@localhost if it runs.
rabbit_node_down() {
  local name=$1
  if ! rabbit_node_running "$name"; then
    log "rabbitmq: node $(rabbit_node "$name") not running; nothing to stop"; return 0
  fi
  rabbit_ctl "$name" -q stop "$(rabbit_node_dir "$name")/rabbitmq.pid" >&2 ||
    rabbit_ctl "$name" -q stop >&2 || true
  log "rabbitmq: node $(rabbit_node "$name") stopped"
}

rabbitmq_tls_up() {
  local d=$TLS_DIR
  rabbit_node_up "$RABBIT_TLS_NAME" "$RABBIT_TLS_DIST_PORT" "$(cat <<EOF
# Generated by ops/services (ops/services.d/rabbitmq-tls.sh); edits are overwritten.
listeners.tcp = none
listeners.ssl.1 = 127.0.0.1:$RABBIT_TLS_PORT
listeners.ssl.2 = 127.0.0.2:$RABBIT_TLS_PORT
ssl_options.cacertfile = $d/ca.pem
ssl_options.certfile = $d/server.pem
ssl_options.keyfile = $d/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
log.console = false
log.file.level = info
EOF
)"
  wait_for 30 port_open "$RABBIT_TLS_PORT" ||
    die "rabbitmq: node $(rabbit_node "$RABBIT_TLS_NAME") runs but 127.0.0.1:$RABBIT_TLS_PORT is closed"
  note rabbitmq-tls "$RABBIT_HOW; amqps on 127.0.0.1:$RABBIT_TLS_PORT (and 127.0.0.2)"
}

rabbitmq_tls_down() { rabbit_node_down "$RABBIT_TLS_NAME"; }

rabbitmq_tls_env() {
  echo "export LANDLORD_AMQP_URL='amqps://guest:guest@localhost:$RABBIT_TLS_PORT/%2f?cacertfile=$TLS_DIR/ca.pem'"
}

rabbitmq_tls_test_env() {
  # Without TLS options: tests add ?cacertfile=… (and certfile/keyfile) from LANDLORD_TEST_TLS_DIR.
  echo "export LANDLORD_TEST_AMQPS_URL=amqps://guest:guest@localhost:$RABBIT_TLS_PORT/%2f"
}

TLS_SERVICES+=(rabbitmq)
