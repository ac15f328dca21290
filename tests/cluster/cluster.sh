#!/usr/bin/env bash
# A throwaway 3-node RabbitMQ cluster on loopback, for carrot's cluster tests,
# benchmarks and docs. It never touches the machine's own RabbitMQ (5672).
#
#   cluster.sh start      boot c1..c3@localhost, join c2 and c3 to c1 (idempotent)
#   cluster.sh stop       kill every node of ours, remove the base directory
#   cluster.sh kill N     kill -9 node N (by the pid in its pid file)
#   cluster.sh revive N   restart a killed node N on its old data; it rejoins
#   cluster.sh status     one line per node, then the cluster's own view
#   cluster.sh dir        print the base directory of the running cluster
#   cluster.sh ctl N ARGS rabbitmqctl ARGS against node N (our cookie, our user)
#
# Node N listens for AMQP on 127.0.0.1:$((5680 + N)) and for Erlang
# distribution on 127.0.0.1:$((25680 + N)). Every node has its own data, log,
# config, enabled-plugins ("[]." so the machine's STOMP plugin does not clash)
# and pid file under one base directory: $CARROT_CLUSTER_DIR, or a mktemp
# directory. The base directory is recorded in a state file
# ($CARROT_CLUSTER_STATE, default ${TMPDIR:-/tmp}/carrot-cluster-5681.state)
# so that stop, kill, revive and status find it from another shell.
#
# The nodes run as the rabbitmq user from the package's own scripts (the ones
# beside its rabbitmqctl, not the wrapper on PATH), with a HOME and an Erlang
# cookie of their own, so no command of ours can reach the machine's node.
# Nodes are only ever stopped by the pids in their pid files (or, for a node
# that died before writing one, by a beam process whose command line names our
# base directory and node). Every wait has a deadline.
set -euo pipefail

readonly NODES=(1 2 3)
readonly AMQP_BASE_PORT=5680
readonly DIST_BASE_PORT=25680
readonly BOOT_TIMEOUT=${CARROT_CLUSTER_BOOT_TIMEOUT:-90}   # seconds per wait
readonly STATE_FILE=${CARROT_CLUSTER_STATE:-${TMPDIR:-/tmp}/carrot-cluster-$((AMQP_BASE_PORT + 1)).state}
readonly MARKER=.carrot-cluster   # a base directory we made and may delete
readonly RMQ_USER=rabbitmq

log() { echo "cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

node_name() { echo "c$1@localhost"; }
amqp_port() { echo $((AMQP_BASE_PORT + $1)); }
dist_port() { echo $((DIST_BASE_PORT + $1)); }

check_node() {
  case "${1:-}" in
    1 | 2 | 3) ;;
    *) die "node must be 1, 2 or 3, not '${1:-}'" ;;
  esac
}

sbin_dir() {
  local server
  server=$(dpkg -L rabbitmq-server 2>/dev/null | grep 'lib/.*/sbin/rabbitmq-server$' | head -n 1) \
    || die "the rabbitmq-server package is not installed (dpkg -L rabbitmq-server found no sbin/rabbitmq-server)"
  dirname "$server"
}

# Run a command as the rabbitmq user, with the environment of our cluster.
as_rabbitmq() {
  local -a prefix=()
  if [ "$(id -u)" = 0 ]; then
    prefix=(runuser -u "$RMQ_USER" --)
  elif [ "$(id -un)" != "$RMQ_USER" ]; then
    die "run as root or as the $RMQ_USER user (now $(id -un))"
  fi
  "${prefix[@]}" env HOME="$BASE/home" \
    RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf" \
    "$@"
}

# rabbitmqctl against node N, bounded by an outer timeout as well.
ctl() {
  local n=$1
  shift
  as_rabbitmq timeout "$((BOOT_TIMEOUT + 15))" "$SBIN/rabbitmqctl" -q -n "$(node_name "$n")" "$@"
}

port_answers() { timeout 2 bash -c "echo > /dev/tcp/127.0.0.1/$1" 2>/dev/null; }

pid_file() { echo "$BASE/c$1/rabbitmq.pid"; }

# The pids of node N's beam: the one in its pid file if it is still our node,
# else any beam whose command line names both our base directory and node N.
node_pids() {
  local n=$1 pid cmd
  pid=$(cat "$(pid_file "$n")" 2>/dev/null || true)
  if [[ "$pid" =~ ^[0-9]+$ ]] && is_our_beam "$pid" "$n"; then
    echo "$pid"
    return
  fi
  for cmd in /proc/[0-9]*/cmdline; do
    pid=${cmd#/proc/}
    pid=${pid%/cmdline}
    is_our_beam "$pid" "$n" && echo "$pid"
  done
  return 0
}

# Our node N's beam: its environment (which, unlike its command line, names
# the node) has our node name and our HOME. Readable by root or rabbitmq only.
is_our_beam() {  # is_our_beam PID N
  local comm env
  comm=$(cat 2>/dev/null < "/proc/$1/comm") || return 1
  [ "$comm" = beam.smp ] || return 1
  env=$'\n'$(tr '\0' '\n' 2>/dev/null < "/proc/$1/environ")$'\n' || return 1
  [[ "$env" == *$'\n'"RABBITMQ_NODENAME=c$2@localhost"$'\n'* && "$env" == *$'\n'"HOME=$BASE/home"$'\n'* ]]
}

node_running() { [ -n "$(node_pids "$1")" ]; }

write_node_files() {
  local n=$1 dir="$BASE/c$1"
  mkdir -p "$dir/data" "$dir/log"
  cat > "$dir/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$(amqp_port "$n")
loopback_users = none
EOF
  echo '[].' > "$dir/enabled_plugins"
}

make_base() {
  if [ -n "${CARROT_CLUSTER_DIR:-}" ]; then
    BASE=$CARROT_CLUSTER_DIR
    mkdir -p "$BASE"
    if [ -n "$(ls -A "$BASE")" ] && [ ! -f "$BASE/$MARKER" ]; then
      die "CARROT_CLUSTER_DIR=$BASE is not empty and not ours: refusing to use (and later delete) it"
    fi
  else
    BASE=$(mktemp -d "${TMPDIR:-/tmp}/carrot-cluster.XXXXXX")
  fi
  BASE=$(cd "$BASE" && pwd -P)
  touch "$BASE/$MARKER"
  echo "$BASE" > "$STATE_FILE"
  mkdir -p "$BASE/home"
  # A cookie of our own: the machine's node (another cookie) cannot be reached.
  if [ ! -s "$BASE/home/.erlang.cookie" ]; then
    head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' > "$BASE/home/.erlang.cookie"
  fi
  cat > "$BASE/rabbitmq-env.conf" <<'EOF'
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
  for n in "${NODES[@]}"; do write_node_files "$n"; done
  if [ "$(id -u)" = 0 ]; then chown -R "$RMQ_USER:" "$BASE"; fi
  chmod 755 "$BASE"
  chmod 400 "$BASE/home/.erlang.cookie"
}

# Load the base directory of the cluster recorded in the state file.
load_base() {
  BASE=$(cat "$STATE_FILE" 2>/dev/null || true)
  [ -n "$BASE" ] && [ -f "$BASE/$MARKER" ]
}

boot_node() {  # boot_node N: start beam detached; returns at once
  local n=$1 dir="$BASE/c$1"
  as_rabbitmq \
    RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
    RABBITMQ_DIST_PORT="$(dist_port "$n")" \
    RABBITMQ_MNESIA_BASE="$dir/data" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_PID_FILE="$(pid_file "$n")" \
    ERL_CRASH_DUMP="$dir/log/erl_crash.dump" \
    "$SBIN/rabbitmq-server" -detached
}

await_node() {  # await_node N: until node N's app runs and its port answers
  local n=$1 deadline=$((SECONDS + BOOT_TIMEOUT)) started=$SECONDS
  # await_startup fails at once on a node not yet registered: first wait for
  # its distribution port, giving up early if its beam died.
  until port_answers "$(dist_port "$n")"; do
    ((SECONDS < deadline)) || die "node $n's distribution port $(dist_port "$n") did not open"
    if ((SECONDS - started >= 3)) && ! node_running "$n"; then
      die "node $(node_name "$n") died while booting (log: $BASE/c$n/log)"
    fi
    sleep 0.2
  done
  ctl "$n" await_startup --timeout "$BOOT_TIMEOUT" \
    || die "node $(node_name "$n") did not start within ${BOOT_TIMEOUT}s (log: $BASE/c$n/log)"
  until port_answers "$(amqp_port "$n")"; do
    ((SECONDS < deadline)) || die "node $n's port $(amqp_port "$n") did not open"
    sleep 0.2
  done
}

kill_node() {  # kill_node N: SIGKILL, then wait (bounded) until it is gone
  local n=$1 pid deadline=$((SECONDS + 30))
  for pid in $(node_pids "$n"); do kill -9 "$pid" 2>/dev/null || true; done
  while node_running "$n" || port_answers "$(amqp_port "$n")"; do
    ((SECONDS < deadline)) || die "node $n is still running 30s after kill -9"
    sleep 0.1
  done
}

ports_free() {
  local n
  for n in "${NODES[@]}"; do
    if port_answers "$(amqp_port "$n")"; then
      log "port $(amqp_port "$n") is already taken by a process that is not our cluster"
      return 1
    fi
  done
}

cluster_healthy() {
  local n
  for n in "${NODES[@]}"; do
    node_running "$n" && port_answers "$(amqp_port "$n")" || return 1
  done
}

do_stop() {
  local n
  if ! load_base; then
    if [ -n "$BASE" ]; then
      # Its directory is gone (or not ours): still stop nodes that name it.
      for n in "${NODES[@]}"; do kill_node "$n"; done
      log "stopped the nodes of $BASE, whose directory is gone or not ours"
    else
      log "no cluster recorded in $STATE_FILE: nothing to stop"
    fi
    rm -f "$STATE_FILE"
    return 0
  fi
  for n in "${NODES[@]}"; do kill_node "$n"; done
  rm -rf --one-file-system "$BASE"
  rm -f "$STATE_FILE"
  log "stopped; removed $BASE"
}

cleanup_failed_start() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" != 0 ]; then
    log "start failed (exit $rc): stopping what was started"
    for n in "${NODES[@]}"; do
      if [ -f "$BASE/c$n/log/c$n@localhost.log" ]; then
        log "last lines of c$n's log:"
        tail -n 5 "$BASE/c$n/log/c$n@localhost.log" >&2 || true
      fi
    done
    do_stop || true
  fi
  exit "$rc"
}

do_start() {
  local n
  if load_base; then
    if cluster_healthy; then
      log "already running in $BASE"
      print_urls
      return 0
    fi
    log "a broken cluster is left in $BASE: stopping it first"
    do_stop
  fi
  ports_free || die "cannot start: a port of 5681-5683 is in use"
  make_base
  trap cleanup_failed_start EXIT INT TERM
  log "starting 3 nodes in $BASE"
  for n in "${NODES[@]}"; do boot_node "$n"; done
  for n in "${NODES[@]}"; do await_node "$n"; done
  for n in 2 3; do
    ctl "$n" stop_app
    ctl "$n" join_cluster "$(node_name 1)"
    ctl "$n" start_app
    await_node "$n"
  done
  trap - EXIT INT TERM
  log "cluster up"
  print_urls
}

print_urls() {
  local n
  for n in "${NODES[@]}"; do echo "amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/"; done
}

do_kill() {
  check_node "$1"
  load_base || die "no cluster is running (state file $STATE_FILE)"
  node_running "$1" || die "node $1 is not running"
  kill_node "$1"
  log "killed node $1 ($(node_name "$1"))"
}

do_revive() {
  local n=$1
  check_node "$n"
  load_base || die "no cluster is running (state file $STATE_FILE)"
  if node_running "$n"; then
    log "node $n is already running"
    return 0
  fi
  rm -f "$(pid_file "$n")"
  boot_node "$n"
  if ! (await_node "$n"); then
    kill_node "$n" || true
    die "node $n did not come back; killed what was started"
  fi
  log "revived node $n ($(node_name "$n"))"
}

do_status() {
  local n state alive=
  load_base || { echo "no cluster (state file $STATE_FILE)"; return 3; }
  echo "base: $BASE"
  for n in "${NODES[@]}"; do
    state=down
    if node_running "$n"; then
      state="running pid $(node_pids "$n" | xargs)"
      alive=${alive:-$n}
    fi
    port_answers "$(amqp_port "$n")" && state="$state, port $(amqp_port "$n") answers"
    echo "$(node_name "$n"): $state"
  done
  [ -n "$alive" ] && ctl "$alive" cluster_status
  return 0
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    start | revive | status | ctl) SBIN=$(sbin_dir) ;;
  esac
  case "$cmd" in
    start) do_start ;;
    stop) do_stop ;;
    kill) do_kill "${1:-}" ;;
    revive) do_revive "${1:-}" ;;
    status) do_status ;;
    ctl)
      check_node "${1:-}"
      load_base || die "no cluster is running (state file $STATE_FILE)"
      ctl "$@"
      ;;
    dir) load_base && echo "$BASE" || die "no cluster is running (state file $STATE_FILE)" ;;
    *)
      sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

BASE=
SBIN=
main "$@"
