#!/usr/bin/env bash
# Local backing services for syncer, without Docker:
#   - OpenSearch (real server, Maven Central integ-test-zip, plain http)
#   - Redis (Debian redis-server)
#   - moto in server mode (DynamoDB, DynamoDB Streams, SQS, ... emulator)
#   - a Redis Cluster (3 primaries + 3 replicas) and a TLS Redis Cluster (3 primaries,
#     self-signed CA), both Debian redis-server with --cluster-enabled yes
#
#   - for tests/integration/test_lambda_runtime.py (`lambda-runtime`, not part of `up`): AWS's
#     Lambda Runtime Interface Emulator and the runtime's awslambdaric, cached, not a service
#
# Usage: scripts/services.sh {up|down|status|wait|cluster-up|cluster-down|cluster-status|lambda-runtime}
#
# Everything listens on 127.0.0.1 only. State lives in ${SYNCER_SERVICES_DIR:-.services}
# (relative to the repository root). When run as root (CI), OpenSearch is run as an
# unprivileged system user because it refuses to start as root.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

# ---------------------------------------------------------------------------
# Configuration (override through the environment)
# ---------------------------------------------------------------------------
OPENSEARCH_VERSION="2.19.6"
OPENSEARCH_ARTIFACT="org.opensearch.distribution.integ-test-zip:opensearch:${OPENSEARCH_VERSION}:zip"

SERVICES_DIR="${SYNCER_SERVICES_DIR:-.services}"
mkdir -p "$SERVICES_DIR"
SERVICES_DIR="$(cd "$SERVICES_DIR" && pwd)"

OPENSEARCH_PORT="${OPENSEARCH_PORT:-9200}"
OPENSEARCH_TRANSPORT_PORT="${OPENSEARCH_TRANSPORT_PORT:-9300-9399}"
OPENSEARCH_JAVA_OPTS="${OPENSEARCH_JAVA_OPTS:--Xms512m -Xmx512m}"
OPENSEARCH_USER="${OPENSEARCH_USER:-syncer-os}"
REDIS_PORT="${REDIS_PORT:-6379}"
MOTO_PORT="${MOTO_PORT:-5000}"
# Redis Cluster: plain ports (primaries then replicas; each bus listens on port + 10000) and
# TLS ports (primaries only). A small node timeout lets a replica take over within seconds.
REDIS_CLUSTER_PORTS="${REDIS_CLUSTER_PORTS:-7000 7001 7002 7003 7004 7005}"
REDIS_CLUSTER_REPLICAS="${REDIS_CLUSTER_REPLICAS:-1}"
REDIS_CLUSTER_TLS_PORTS="${REDIS_CLUSTER_TLS_PORTS-7100 7101 7102}"
REDIS_CLUSTER_NODE_TIMEOUT_MS="${REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}"
WAIT_TIMEOUT="${SERVICES_WAIT_TIMEOUT:-180}"
# The Runtime Interface Emulator's version (a pseudo-version: no tagged one is served).
LAMBDA_RIE_VERSION="${LAMBDA_RIE_VERSION:-v0.0.0-20261030222936-bef5c4ba774d}"

HOST=127.0.0.1

DOWNLOAD_DIR="$SERVICES_DIR/downloads"
OS_ZIP="$DOWNLOAD_DIR/opensearch-${OPENSEARCH_VERSION}.zip"
OS_HOME="$SERVICES_DIR/opensearch-${OPENSEARCH_VERSION}"   # unpacked distribution
OS_STATE="$SERVICES_DIR/opensearch"                         # config, data, logs, pid
OS_CONF="$OS_STATE/config"
OS_DATA="$OS_STATE/data"
OS_LOGS="$OS_STATE/logs"
OS_TMP="$OS_STATE/tmp"
OS_PIDFILE="$OS_STATE/opensearch.pid"
OS_STARTLOG="$OS_LOGS/startup.log"
OS_CLUSTER_NAME="syncer-local"

REDIS_STATE="$SERVICES_DIR/redis"
REDIS_PIDFILE="$REDIS_STATE/redis.pid"
REDIS_LOG="$REDIS_STATE/redis.log"

REDIS_CLUSTER_STATE="$SERVICES_DIR/redis-cluster"    # one directory per port
REDIS_CLUSTER_TLS_DIR="$REDIS_CLUSTER_STATE/tls"         # ca.pem, server.pem, server.key

MOTO_STATE="$SERVICES_DIR/moto"
MOTO_PIDFILE="$MOTO_STATE/moto.pid"
MOTO_LOG="$MOTO_STATE/moto.log"

RECORD="$SERVICES_DIR/started"   # what `up` started, for `down`

LAMBDA_RUNTIME_DIR="$SERVICES_DIR/lambda-runtime"

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=0
# apt_install <command-to-check> <package>
ensure_cmd() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if is_root && command -v apt-get >/dev/null 2>&1; then
        log "installing $pkg (missing '$cmd')"
        if [ "$APT_UPDATED" -eq 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
        command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' still missing after installing $pkg"
    else
        die "'$cmd' not found; install the '$pkg' package (e.g. sudo apt-get install -y $pkg)"
    fi
}

# pid_alive <pidfile>: true if the pidfile names a live process
pid_alive() {
    local pidfile="$1" pid
    [ -s "$pidfile" ] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [ -n "$pid" ] || return 1
    # kill -0 fails with EPERM for other users' processes; /proc still tells us.
    kill -0 "$pid" 2>/dev/null || [ -d "/proc/$pid" ]
}

# stop_pidfile <name> <pidfile> [grace-seconds]
stop_pidfile() {
    local name="$1" pidfile="$2" grace="${3:-30}" pid i
    if ! pid_alive "$pidfile"; then
        rm -f "$pidfile"
        log "$name: not running (no live pid file)"
        return 0
    fi
    pid="$(tr -dc '0-9' <"$pidfile")"
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: still alive after ${grace}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

tail_log() {
    local file="$1"
    if [ -f "$file" ]; then
        printf -- '----- last lines of %s -----\n' "$file" >&2
        tail -n 40 "$file" >&2 || true
        printf -- '-----\n' >&2
    fi
}

# Run a command as the OpenSearch user (or as ourselves when not root).
as_os_user() {
    if is_root; then
        runuser -u "$OPENSEARCH_USER" -- "$@"
    else
        "$@"
    fi
}

# ---------------------------------------------------------------------------
# What `up` started: one line "<service> <port> <pidfile>" per process in $RECORD. `down`
# stops what the record names, whatever the port variables say now. A failed `up` stops what
# that same run started (STARTED_NOW) before it exits.
# ---------------------------------------------------------------------------
STARTED_NOW=()

record_add() {
    local service="$1" port="$2" pidfile="$3"
    touch "$RECORD"
    grep -v -F " $pidfile" "$RECORD" >"$RECORD.tmp" || true
    printf '%s %s %s\n' "$service" "$port" "$pidfile" >>"$RECORD.tmp"
    mv "$RECORD.tmp" "$RECORD"
    STARTED_NOW+=("$service $port $pidfile")
}

# record_forget <pidfile>
record_forget() {
    [ -f "$RECORD" ] || return 0
    grep -v -F " $1" "$RECORD" >"$RECORD.tmp" || true
    mv "$RECORD.tmp" "$RECORD"
    [ -s "$RECORD" ] || rm -f "$RECORD"
}

# stop_recorded <service> <port> <pidfile>: stop one recorded process and forget it.
stop_recorded() {
    local service="$1" port="$2" pidfile="$3" pid i
    case "$service" in
        redis)
            if pid_alive "$pidfile"; then
                pid="$(tr -dc '0-9' <"$pidfile")"
                log "redis: stopping pid $pid (port $port)"
                redis-cli -h "$HOST" -p "$port" shutdown nosave >/dev/null 2>&1 || true
                for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            fi
            stop_pidfile "redis $port" "$pidfile" 10
            ;;
        redis-cluster)
            stop_pidfile "redis-cluster $port" "$pidfile" 10
            # Forget the cluster, so the next `up` creates it afresh.
            rm -f "$(dirname "$pidfile")/nodes.conf" "$(dirname "$pidfile")/dump.rdb"
            ;;
        opensearch) stop_pidfile "opensearch $port" "$pidfile" 60 ;;
        *) stop_pidfile "$service $port" "$pidfile" 10 ;;
    esac
    record_forget "$pidfile"
}

# stop_what_record_names [service-pattern]: every recorded process (of matching services).
stop_what_record_names() {
    local pattern="${1:-.*}" service port pidfile lines=()
    [ -f "$RECORD" ] || return 0
    mapfile -t lines <"$RECORD"
    local line
    for line in "${lines[@]}"; do
        read -r service port pidfile <<<"$line"
        [[ "$service" =~ ^($pattern)$ ]] || continue
        stop_recorded "$service" "$port" "$pidfile"
    done
}

# EXIT trap of `up` and `cluster-up`: a failed run leaves nothing of its own running.
stop_started_now_on_failure() {
    local status=$? entry service port pidfile
    [ "$status" -ne 0 ] && [ "${#STARTED_NOW[@]}" -gt 0 ] || return "$status"
    log "stopping what this failed run started"
    for entry in "${STARTED_NOW[@]}"; do
        read -r service port pidfile <<<"$entry"
        stop_recorded "$service" "$port" "$pidfile" || true
    done
    return "$status"
}

# ---------------------------------------------------------------------------
# Ports: `up` checks every port it needs before it starts anything.
# ---------------------------------------------------------------------------
# check_port_variables: every port variable is a number from 1 to 65535 (the transport's may be
# a range low-high), else one line naming the variable, before anything uses it.
check_port_variables() {
    local variable value low high
    for variable in OPENSEARCH_PORT REDIS_PORT MOTO_PORT OPENSEARCH_TRANSPORT_PORT; do
        value="${!variable}"
        low="${value%%-*}" high="${value#*-}"
        if [ "$variable" != OPENSEARCH_TRANSPORT_PORT ] || [[ "$value" != *-* ]]; then
            high="$low"
        fi
        if ! [[ "$low" =~ ^[0-9]{1,5}$ && "$high" =~ ^[0-9]{1,5}$ ]] \
                || [ "$((10#$low))" -lt 1 ] || [ "$((10#$high))" -gt 65535 ] \
                || [ "$((10#$low))" -gt "$((10#$high))" ]; then
            if [ "$variable" = OPENSEARCH_TRANSPORT_PORT ]; then
                die "$variable: '$value' is not a port from 1 to 65535 or a range low-high of them"
            fi
            die "$variable: '$value' is not a port from 1 to 65535"
        fi
    done
}

# check_ports: reads "<port or low-high range> <variable> <what>" lines on stdin; prints one
# error per taken port (a range is taken when all of its ports are) naming what holds it and
# the variable that moves it; fails if any is taken. A port is free when a socket can bind to
# it as the servers do (SO_REUSEADDR). A port whose only sockets are closed connections in
# TIME-WAIT is held by nobody: the kernel releases it within 60 s, so `up` waits for that
# (saying so) instead of reporting a holder; a server cannot bind it before (Linux refuses a
# bind next to a TIME-WAIT socket that was not itself SO_REUSEADDR, e.g. a client's).
check_ports() {
    # The program comes from a here-document, so the port lines come as an argument.
    python3 - "$HOST" "$(cat)" <<'EOF'
import os
import socket
import sys
import time

host = sys.argv[1]
TIME_WAIT = "06"  # the state column of /proc/net/tcp
# Linux keeps a closed connection in TIME-WAIT for 60 s; SERVICES_TIME_WAIT_S shortens the wait.
TIME_WAIT_S = float(os.environ.get("SERVICES_TIME_WAIT_S") or 65)


def free(port):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def tcp_rows(port):
    """The fields of each row of /proc/net/tcp and tcp6 whose local port it is."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                yield fields


def sockets_on(port):
    """(inode, uid) of the TCP sockets whose local port it is, listening ones first (a
    connection's local end holds its port too); TIME-WAIT ones have no inode and are left out."""
    found = [(f[3] != "0A", f[9], int(f[7])) for f in tcp_rows(port) if f[9] != "0"]
    return [(inode, uid) for _, inode, uid in sorted(found)]


def states_on(port):
    """The TCP states of every socket whose local port it is (TIME-WAIT ones included)."""
    return [fields[3] for fields in tcp_rows(port)]


def released_from_time_wait(port, what):
    """When only TIME-WAIT sockets are on the port: wait until it binds (True), up to 65 s."""
    states = states_on(port)
    if not states or any(state != TIME_WAIT for state in states):
        return False
    print(
        f"port {port} ({what}): only closed connections in TIME-WAIT are on it; waiting up to "
        f"{TIME_WAIT_S:g} s for the kernel to release it",
        file=sys.stderr,
    )
    deadline = time.monotonic() + TIME_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if free(port):
            return True
        if any(state != TIME_WAIT for state in states_on(port)):
            return False  # something else took it meanwhile: report that
    return False


def holder(port):
    """'pid N (command line)' of the process that holds the port, when it can be told."""
    sockets = sockets_on(port)
    if not sockets:
        return "a socket this user cannot see"
    inode = f"socket:[{sockets[0][0]}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == inode:
                    raw = open(f"/proc/{pid}/cmdline", "rb").read()
                    command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {pid} ({command[:100]})"
            except OSError:
                continue
    import pwd

    uid = sockets[0][1]
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return f"a process of user {user}"


taken = 0
for line in sys.argv[2].splitlines():
    spec, variable, what = line.rstrip("\n").split(" ", 2)
    low, _, high = spec.partition("-")
    ports = range(int(low), int(high or low) + 1)
    if any(free(port) for port in ports):
        continue
    if len(ports) == 1 and released_from_time_wait(ports[0], what):
        continue
    taken += 1
    if len(ports) == 1 and states_on(ports[0]) and set(states_on(ports[0])) == {TIME_WAIT}:
        print(
            f"port {spec} ({what}) on {host} is still in TIME-WAIT after {TIME_WAIT_S:g} s; "
            f"try again, or move it with {variable}",
            file=sys.stderr,
        )
    elif len(ports) == 1:
        print(
            f"port {spec} ({what}) on {host} is in use by {holder(ports[0])}; "
            f"stop that, or move it with {variable}",
            file=sys.stderr,
        )
    else:
        print(
            f"every port of {spec} ({what}) on {host} is in use; move it with {variable}",
            file=sys.stderr,
        )
sys.exit(1 if taken else 0)
EOF
}

# cluster_ports_needed <ports> <variable> <what>: a node's port and its bus port (+10000),
# unless the node is one this script started and it still runs.
cluster_ports_needed() {
    local ports="$1" variable="$2" what="$3" port
    for port in $ports; do
        [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 55535 ] \
            || die "$variable: '$port' is not a port from 1 to 55535 (its bus port is +10000)"
        pid_alive "$REDIS_CLUSTER_STATE/$port/redis.pid" && continue
        echo "$port $variable $what"
        echo "$((port + 10000)) $variable cluster bus of $what $port"
    done
}

cluster_ports_needed_all() {
    cluster_ports_needed "$REDIS_CLUSTER_PORTS" REDIS_CLUSTER_PORTS "Redis Cluster node"
    [ -z "$REDIS_CLUSTER_TLS_PORTS" ] \
        || cluster_ports_needed "$REDIS_CLUSTER_TLS_PORTS" REDIS_CLUSTER_TLS_PORTS "TLS Redis Cluster node"
}

# ports_needed: every port `up` would bind. A service this script started and that still runs
# needs none; one that already answers on its port as that service is reused (`down` leaves it).
ports_needed() {
    if ! pid_alive "$REDIS_PIDFILE" && ! redis_ready; then
        echo "$REDIS_PORT REDIS_PORT Redis"
    fi
    if ! pid_alive "$MOTO_PIDFILE" && ! moto_ready; then
        echo "$MOTO_PORT MOTO_PORT moto server"
    fi
    if ! pid_alive "$OS_PIDFILE" && ! opensearch_answers; then
        echo "$OPENSEARCH_PORT OPENSEARCH_PORT OpenSearch HTTP"
        echo "$OPENSEARCH_TRANSPORT_PORT OPENSEARCH_TRANSPORT_PORT OpenSearch transport"
    fi
    cluster_ports_needed_all
}

# preflight <ports_needed function>: stop before starting anything when a port is taken.
preflight() {
    local needed errors
    needed="$("$1")" || exit 1
    [ -n "$needed" ] || return 0
    ensure_cmd python3 python3
    if ! errors="$(check_ports <<<"$needed" 2>&1)"; then
        printf '%s\n' "$errors" | sed 's/^/[services] ERROR: /' >&2
        die "nothing was started: every port is checked before anything starts"
    fi
}

# ---------------------------------------------------------------------------
# Health checks (quiet, exit status only)
# ---------------------------------------------------------------------------
opensearch_ready() {
    curl -fsS -m 5 -o /dev/null \
        "http://$HOST:$OPENSEARCH_PORT/_cluster/health?wait_for_status=yellow&timeout=3s" 2>/dev/null
}
# Another HTTP server on the port is not an OpenSearch to reuse.
opensearch_answers() {
    curl -fsS -m 3 "http://$HOST:$OPENSEARCH_PORT/" 2>/dev/null | grep -q '"cluster_name"'
}
opensearch_listening() {
    curl -sS -m 3 -o /dev/null "http://$HOST:$OPENSEARCH_PORT/" 2>/dev/null
}
redis_ready() {
    command -v redis-cli >/dev/null 2>&1 || return 1
    # timeout: something else on the port may accept the connection and never answer.
    [ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}
moto_ready() {
    local code
    code="$(curl -sS -m 3 -o /dev/null -w '%{http_code}' "http://$HOST:$MOTO_PORT/moto-api/" 2>/dev/null || true)"
    [ "$code" = "200" ] || [ "$code" = "404" ]
}

# ---------------------------------------------------------------------------
# OpenSearch
# ---------------------------------------------------------------------------
java_home() {
    local java
    java="$(readlink -f /usr/bin/java 2>/dev/null || true)"
    [ -n "$java" ] && [ -x "$java" ] || die "Java 17 not found at /usr/bin/java (apt-get install -y openjdk-17-jre-headless)"
    dirname "$(dirname "$java")"
}

opensearch_fetch() {
    if [ -s "$OS_ZIP" ]; then
        log "opensearch: using cached $OS_ZIP"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed to fetch $OPENSEARCH_ARTIFACT"
    mkdir -p "$DOWNLOAD_DIR"
    log "opensearch: downloading $OPENSEARCH_ARTIFACT from Maven Central"
    local tmpdir
    tmpdir="$(mktemp -d "$DOWNLOAD_DIR/.fetch.XXXXXX")"
    if mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$OPENSEARCH_ARTIFACT" \
            -DoutputDirectory="$tmpdir" -Dmdep.overWriteReleases=true >"$DOWNLOAD_DIR/mvn.log" 2>&1 \
        && [ -s "$tmpdir/opensearch-${OPENSEARCH_VERSION}.zip" ]; then
        mv "$tmpdir/opensearch-${OPENSEARCH_VERSION}.zip" "$OS_ZIP"
    else
        log "opensearch: dependency:copy failed, trying dependency:get"
        mvn -q -B -Dstyle.color=never dependency:get -Dartifact="$OPENSEARCH_ARTIFACT" \
            -Dtransitive=false >>"$DOWNLOAD_DIR/mvn.log" 2>&1 || tail_log "$DOWNLOAD_DIR/mvn.log"
        local m2="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}"
        local cached="$m2/org/opensearch/distribution/integ-test-zip/opensearch/$OPENSEARCH_VERSION/opensearch-$OPENSEARCH_VERSION.zip"
        [ -s "$cached" ] || { rm -rf "$tmpdir"; die "could not fetch $OPENSEARCH_ARTIFACT"; }
        cp "$cached" "$OS_ZIP.part" && mv "$OS_ZIP.part" "$OS_ZIP"
    fi
    rm -rf "$tmpdir"
}

opensearch_unpack() {
    if [ -x "$OS_HOME/bin/opensearch" ]; then
        return 0
    fi
    log "opensearch: unpacking into $OS_HOME"
    local tmpdir
    tmpdir="$(mktemp -d "$SERVICES_DIR/.unpack.XXXXXX")"
    unzip -q "$OS_ZIP" -d "$tmpdir" || { rm -rf "$tmpdir"; rm -f "$OS_ZIP"; die "corrupt $OS_ZIP removed; rerun"; }
    rm -rf "$OS_HOME"
    mv "$tmpdir/opensearch-${OPENSEARCH_VERSION}" "$OS_HOME"
    rm -rf "$tmpdir"
}

opensearch_user_setup() {
    is_root || return 0
    if ! id -u "$OPENSEARCH_USER" >/dev/null 2>&1; then
        log "opensearch: creating system user $OPENSEARCH_USER"
        useradd --system --user-group --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin "$OPENSEARCH_USER"
    fi
    chown -R "$OPENSEARCH_USER:" "$OS_HOME" "$OS_STATE"
    # The unprivileged user must be able to reach the services directory.
    if ! runuser -u "$OPENSEARCH_USER" -- test -x "$OS_STATE" -a -w "$OS_DATA"; then
        die "user $OPENSEARCH_USER cannot access $OS_STATE (a parent directory is not world-searchable?); set SYNCER_SERVICES_DIR to e.g. /var/tmp/syncer-services"
    fi
}

opensearch_configure() {
    mkdir -p "$OS_CONF" "$OS_DATA" "$OS_LOGS" "$OS_TMP"
    # Start from the distribution's stock config files, then write our own settings.
    cp "$OS_HOME/config/jvm.options" "$OS_HOME/config/log4j2.properties" "$OS_CONF/"
    mkdir -p "$OS_CONF/jvm.options.d"
    cat >"$OS_CONF/opensearch.yml" <<EOF
# Generated by scripts/services.sh -- local development/test node, do not edit.
cluster.name: $OS_CLUSTER_NAME
node.name: syncer-local-1
discovery.type: single-node
network.host: $HOST
http.port: $OPENSEARCH_PORT
transport.host: $HOST
transport.port: $OPENSEARCH_TRANSPORT_PORT
path.data: $OS_DATA
path.logs: $OS_LOGS
bootstrap.memory_lock: false
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
EOF
}

opensearch_up() {
    if opensearch_listening; then
        log "opensearch: already answering on $HOST:$OPENSEARCH_PORT, leaving it alone"
        return 0
    fi
    if pid_alive "$OS_PIDFILE"; then
        log "opensearch: pid $(cat "$OS_PIDFILE") alive but not answering yet (still starting?)"
        return 0
    fi
    rm -f "$OS_PIDFILE"
    opensearch_fetch
    opensearch_unpack
    opensearch_configure
    opensearch_user_setup

    local jh
    jh="$(java_home)"
    log "opensearch: starting $OPENSEARCH_VERSION on $HOST:$OPENSEARCH_PORT (java: $jh, user: $(is_root && echo "$OPENSEARCH_USER" || id -un))"
    # -d backgrounds the JVM; with OPENSEARCH_STARTUP_SLEEP_TIME the launcher checks
    # after 2s that it is still alive, so argument/config errors fail right here.
    if ! as_os_user env \
            OPENSEARCH_JAVA_HOME="$jh" JAVA_HOME="$jh" \
            OPENSEARCH_PATH_CONF="$OS_CONF" \
            OPENSEARCH_JAVA_OPTS="$OPENSEARCH_JAVA_OPTS" \
            OPENSEARCH_TMPDIR="$OS_TMP" \
            OPENSEARCH_STARTUP_SLEEP_TIME=2 \
            setsid -w "$OS_HOME/bin/opensearch" -d -p "$OS_PIDFILE" \
            </dev/null >"$OS_STARTLOG" 2>&1; then
        tail_log "$OS_STARTLOG"
        tail_log "$OS_LOGS/$OS_CLUSTER_NAME.log"
        die "opensearch failed to start"
    fi
    record_add opensearch "$OPENSEARCH_PORT" "$OS_PIDFILE"
}

opensearch_down() { stop_pidfile opensearch "$OS_PIDFILE" 60; }

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------
redis_up() {
    ensure_cmd redis-cli redis-tools
    if redis_ready; then
        if pid_alive "$REDIS_PIDFILE"; then
            log "redis: already running (pid $(cat "$REDIS_PIDFILE")), leaving it alone"
        else
            log "redis: something already answers PING on $HOST:$REDIS_PORT, reusing it"
        fi
        return 0
    fi
    ensure_cmd redis-server redis-server
    # A fresh apt install may have started Debian's own service on 6379.
    if redis_ready; then
        log "redis: system redis-server now answers on $HOST:$REDIS_PORT, reusing it"
        return 0
    fi
    mkdir -p "$REDIS_STATE"
    rm -f "$REDIS_PIDFILE"
    log "redis: starting on $HOST:$REDIS_PORT"
    redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes \
        --save '' --appendonly no --dir "$REDIS_STATE" \
        --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
        || { tail_log "$REDIS_LOG"; die "redis-server failed to start"; }
    record_add redis "$REDIS_PORT" "$REDIS_PIDFILE"
}

redis_down() {
    if pid_alive "$REDIS_PIDFILE"; then
        local pid i
        pid="$(tr -dc '0-9' <"$REDIS_PIDFILE")"
        log "redis: stopping pid $pid"
        redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$REDIS_PIDFILE"
            return 0
        fi
    fi
    stop_pidfile redis "$REDIS_PIDFILE" 10
}

# ---------------------------------------------------------------------------
# Redis Cluster (plain and TLS)
# ---------------------------------------------------------------------------
# cluster_cli <port> <tls 0|1> args...: redis-cli against one node of either cluster.
cluster_cli() {
    local port="$1" tls="$2"
    shift 2
    if [ "$tls" -eq 1 ]; then
        redis-cli --tls --cacert "$REDIS_CLUSTER_TLS_DIR/ca.pem" -h "$HOST" -p "$port" "$@"
    else
        redis-cli -h "$HOST" -p "$port" "$@"
    fi
}

first_word() { printf '%s\n' "$1" | awk '{print $1}'; }

# A self-signed CA and a certificate for 127.0.0.1/localhost, made once.
cluster_tls_files() {
    [ -s "$REDIS_CLUSTER_TLS_DIR/server.pem" ] && return 0
    ensure_cmd openssl openssl
    mkdir -p "$REDIS_CLUSTER_TLS_DIR"
    local dir="$REDIS_CLUSTER_TLS_DIR"
    log "redis-cluster: making a test CA and a server certificate in $dir"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 -subj "/CN=syncer local test CA" \
        >/dev/null 2>&1 || die "openssl could not make the test CA"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" \
        >/dev/null 2>&1 || die "openssl could not make the server key"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
        "extendedKeyUsage=serverAuth,clientAuth" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -out "$dir/server.pem" -days 3650 -extfile "$dir/server.ext" \
        >/dev/null 2>&1 || die "openssl could not sign the server certificate"
    chmod 644 "$dir"/*.pem "$dir/server.key"
}

# cluster_node_up <port> <tls 0|1>: start one node unless it runs; its nodes.conf is kept, so a
# node stopped by a failover test rejoins the cluster (as a replica of its replacement).
cluster_node_up() {
    local port="$1" tls="$2" dir="$REDIS_CLUSTER_STATE/$1"
    local pidfile="$dir/redis.pid"
    if pid_alive "$pidfile"; then
        return 0
    fi
    mkdir -p "$dir"
    rm -f "$pidfile"
    # A node without nodes.conf starts a new cluster: data a replica sync left on disk would
    # make it claim those keys' slots and refuse `redis-cli --cluster create`.
    [ -f "$dir/nodes.conf" ] || rm -f "$dir/dump.rdb"
    local listen=(--port "$port")
    if [ "$tls" -eq 1 ]; then
        listen=(--port 0 --tls-port "$port" --tls-cluster yes --tls-replication yes
                --tls-cert-file "$REDIS_CLUSTER_TLS_DIR/server.pem"
                --tls-key-file "$REDIS_CLUSTER_TLS_DIR/server.key"
                --tls-ca-cert-file "$REDIS_CLUSTER_TLS_DIR/ca.pem" --tls-auth-clients no)
    fi
    redis-server --bind "$HOST" "${listen[@]}" --daemonize yes \
        --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout "$REDIS_CLUSTER_NODE_TIMEOUT_MS" \
        --save '' --appendonly no --dir "$dir" \
        --pidfile "$pidfile" --logfile "$dir/redis.log" \
        || { tail_log "$dir/redis.log"; die "redis-server (cluster node $port) failed to start"; }
    record_add redis-cluster "$port" "$pidfile"
}

# cluster_ready <ports> <tls 0|1>: every node answers, knows every other, has state ok, and
# every replica is in sync with its primary (so a failover test can promote it).
cluster_ready() {
    local ports="$1" tls="$2" port info count
    count="$(wc -w <<<"$ports")"
    for port in $ports; do
        info="$(cluster_cli "$port" "$tls" cluster info 2>/dev/null)" || return 1
        grep -q '^cluster_state:ok' <<<"$info" || return 1
        grep -q "^cluster_known_nodes:$count" <<<"$info" || return 1
        info="$(cluster_cli "$port" "$tls" info replication 2>/dev/null)" || return 1
        if grep -q '^role:slave' <<<"$info"; then
            grep -q '^master_link_status:up' <<<"$info" || return 1
        fi
    done
}

# cluster_form <ports> <tls 0|1> <replicas>: start the nodes; create the cluster when they are new.
cluster_form() {
    local ports="$1" tls="$2" replicas="$3" port addresses=() i first
    first="$(first_word "$ports")"
    for port in $ports; do
        cluster_node_up "$port" "$tls"
        addresses+=("$HOST:$port")
    done
    for ((i = 0; i < 50; i++)); do
        cluster_cli "$first" "$tls" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    # A node that serves no slot and knows no other node has never been part of a cluster.
    local info
    info="$(cluster_cli "$first" "$tls" cluster info 2>/dev/null || true)"
    if grep -q '^cluster_slots_assigned:0' <<<"$info" && grep -q '^cluster_known_nodes:1' <<<"$info"; then
        log "redis-cluster: creating ${addresses[*]} (replicas per primary: $replicas)"
        local create=(redis-cli)
        [ "$tls" -eq 1 ] && create+=(--tls --cacert "$REDIS_CLUSTER_TLS_DIR/ca.pem")
        "${create[@]}" --cluster create "${addresses[@]}" --cluster-replicas "$replicas" \
            --cluster-yes >"$REDIS_CLUSTER_STATE/create-$first.log" 2>&1 \
            || { tail_log "$REDIS_CLUSTER_STATE/create-$first.log";
                 for port in $ports; do tail_log "$REDIS_CLUSTER_STATE/$port/redis.log"; done
                 die "redis-cli --cluster create failed"; }
    fi
}

cluster_up() {
    ensure_cmd redis-cli redis-tools
    ensure_cmd redis-server redis-server
    mkdir -p "$REDIS_CLUSTER_STATE"
    cluster_form "$REDIS_CLUSTER_PORTS" 0 "$REDIS_CLUSTER_REPLICAS"
    if [ -n "$REDIS_CLUSTER_TLS_PORTS" ]; then
        cluster_tls_files
        cluster_form "$REDIS_CLUSTER_TLS_PORTS" 1 0
    fi
}

cluster_all_ready() {
    cluster_ready "$REDIS_CLUSTER_PORTS" 0 \
        && { [ -z "$REDIS_CLUSTER_TLS_PORTS" ] || cluster_ready "$REDIS_CLUSTER_TLS_PORTS" 1; }
}

cluster_wait() {
    local deadline=$((SECONDS + WAIT_TIMEOUT)) port
    until cluster_all_ready; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            for port in $REDIS_CLUSTER_PORTS $REDIS_CLUSTER_TLS_PORTS; do
                tail_log "$REDIS_CLUSTER_STATE/$port/redis.log"
            done
            die "redis-cluster: not ready after ${WAIT_TIMEOUT}s"
        fi
        sleep 0.5
    done
    log "redis-cluster: ready"
}

# Stops every node and forgets the clusters, so the next `up` creates them afresh.
cluster_down() {
    local port
    for port in $REDIS_CLUSTER_PORTS $REDIS_CLUSTER_TLS_PORTS; do
        stop_pidfile "redis-cluster $port" "$REDIS_CLUSTER_STATE/$port/redis.pid" 10
        rm -f "$REDIS_CLUSTER_STATE/$port/nodes.conf" "$REDIS_CLUSTER_STATE/$port/dump.rdb"
    done
}

cluster_status() {
    local rc=0 first
    first="$(first_word "$REDIS_CLUSTER_PORTS")"
    if cluster_ready "$REDIS_CLUSTER_PORTS" 0; then
        echo "redis-cluster: up   redis://$HOST:$first (nodes $REDIS_CLUSTER_PORTS)"
    else
        echo "redis-cluster: DOWN redis://$HOST:$first"; rc=1
    fi
    if [ -n "$REDIS_CLUSTER_TLS_PORTS" ]; then
        first="$(first_word "$REDIS_CLUSTER_TLS_PORTS")"
        if cluster_ready "$REDIS_CLUSTER_TLS_PORTS" 1; then
            echo "redis-cluster-tls: up rediss://$HOST:$first (CA $REDIS_CLUSTER_TLS_DIR/ca.pem)"
        else
            echo "redis-cluster-tls: DOWN rediss://$HOST:$first"; rc=1
        fi
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------
# moto
# ---------------------------------------------------------------------------
pick_python() {
    local py="${PYTHON:-.venv/bin/python}"
    if ! command -v "$py" >/dev/null 2>&1 && [ ! -x "$py" ]; then
        log "moto: $py not found, falling back to python3"
        py=python3
    fi
    if ! "$py" -c 'import moto.server, flask' >/dev/null 2>&1; then
        if [ -z "${PYTHON:-}" ] && [ "$py" != python3 ] \
                && python3 -c 'import moto.server, flask' >/dev/null 2>&1; then
            log "moto: $py lacks moto[server], falling back to python3"
            py=python3
        else
            die "moto server not importable with $py; run: $py -m pip install 'moto[server]'"
        fi
    fi
    printf '%s\n' "$py"
}

moto_up() {
    if moto_ready; then
        log "moto: already answering on $HOST:$MOTO_PORT, leaving it alone"
        return 0
    fi
    if pid_alive "$MOTO_PIDFILE"; then
        log "moto: pid $(cat "$MOTO_PIDFILE") alive but not answering yet (still starting?)"
        return 0
    fi
    local py
    py="$(pick_python)"
    mkdir -p "$MOTO_STATE"
    log "moto: starting on $HOST:$MOTO_PORT with $py"
    nohup setsid "$py" -m moto.server -H "$HOST" -p "$MOTO_PORT" \
        </dev/null >"$MOTO_LOG" 2>&1 &
    echo $! >"$MOTO_PIDFILE"
    record_add moto "$MOTO_PORT" "$MOTO_PIDFILE"
}

moto_down() { stop_pidfile moto "$MOTO_PIDFILE" 10; }

# ---------------------------------------------------------------------------
# The Lambda runtime, locally: AWS's Runtime Interface Emulator (a Go module, built once) and
# what the python3.11 runtime provides next to a package (awslambdaric, boto3), installed from
# requirements/lambda-runtime.txt. tests/integration/test_lambda_runtime.py runs build/lambda
# with them. Cached in $LAMBDA_RUNTIME_DIR; nothing here listens until a test starts the RIE.
# ---------------------------------------------------------------------------
find_go() {
    local go
    for go in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go; do
        [ -n "$go" ] && [ -x "$go" ] && { printf '%s\n' "$go"; return 0; }
    done
    die "go not found (the Runtime Interface Emulator is a Go module; it needs Go >= 1.26): install Go from go.dev/dl and put it on PATH"
}

lambda_runtime_up() {
    local rie="$LAMBDA_RUNTIME_DIR/bin/aws-lambda-rie" lock=requirements/lambda-runtime.txt
    local site="$LAMBDA_RUNTIME_DIR/python" stamp
    mkdir -p "$LAMBDA_RUNTIME_DIR"
    if [ -x "$rie" ] && [ "$(cat "$rie.version" 2>/dev/null)" = "$LAMBDA_RIE_VERSION" ]; then
        log "lambda-runtime: using cached $rie"
    else
        local go
        go="$(find_go)"
        log "lambda-runtime: building aws-lambda-rie@$LAMBDA_RIE_VERSION with $go (about a minute)"
        GOBIN="$LAMBDA_RUNTIME_DIR/bin" GOFLAGS=-buildvcs=false "$go" install \
            "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$LAMBDA_RIE_VERSION" \
            || die "go install of the Runtime Interface Emulator failed"
        printf '%s\n' "$LAMBDA_RIE_VERSION" >"$rie.version"
    fi
    stamp="$(sha256sum "$lock" | cut -d' ' -f1) with bytecode"
    if [ "$(cat "$site.lock-sha256" 2>/dev/null)" = "$stamp" ]; then
        log "lambda-runtime: using cached $site"
    else
        local py="${PYTHON:-.venv/bin/python}"
        log "lambda-runtime: installing $lock into $site"
        rm -rf "$site" "$site.lock-sha256"
        # With bytecode, as the runtime's own /var/runtime has it.
        "$py" -m pip install --quiet --no-deps --require-hashes --target "$site" \
            --platform manylinux2014_x86_64 --implementation cp --python-version 3.11 \
            --only-binary=:all: -r "$lock" || die "installing $lock failed"
        printf '%s\n' "$stamp" >"$site.lock-sha256"
    fi
    echo "export LAMBDA_RIE=$rie"
    echo "export LAMBDA_RUNTIME_PYTHONPATH=$site"
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
wait_all() {
    local deadline=$((SECONDS + WAIT_TIMEOUT)) os=0 rd=0 mt=0
    log "waiting up to ${WAIT_TIMEOUT}s for services"
    while :; do
        [ "$os" -eq 1 ] || { opensearch_ready && os=1 && log "opensearch: ready"; } || true
        [ "$rd" -eq 1 ] || { redis_ready && rd=1 && log "redis: ready"; } || true
        [ "$mt" -eq 1 ] || { moto_ready && mt=1 && log "moto: ready"; } || true
        [ $((os + rd + mt)) -eq 3 ] && return 0
        # Fail fast when a process we started has already died.
        if [ "$os" -eq 0 ] && [ -s "$OS_PIDFILE" ] && ! pid_alive "$OS_PIDFILE"; then
            tail_log "$OS_STARTLOG"; tail_log "$OS_LOGS/$OS_CLUSTER_NAME.log"
            die "opensearch process exited during startup"
        fi
        if [ "$mt" -eq 0 ] && [ -s "$MOTO_PIDFILE" ] && ! pid_alive "$MOTO_PIDFILE"; then
            tail_log "$MOTO_LOG"
            die "moto server process exited during startup"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            [ "$os" -eq 1 ] || { log "opensearch: NOT ready on $HOST:$OPENSEARCH_PORT";
                                 tail_log "$OS_STARTLOG"; tail_log "$OS_LOGS/$OS_CLUSTER_NAME.log"; }
            [ "$rd" -eq 1 ] || { log "redis: NOT ready on $HOST:$REDIS_PORT"; tail_log "$REDIS_LOG"; }
            [ "$mt" -eq 1 ] || { log "moto: NOT ready on $HOST:$MOTO_PORT"; tail_log "$MOTO_LOG"; }
            die "timed out after ${WAIT_TIMEOUT}s"
        fi
        sleep 1
    done
}

print_env() {
    cat <<EOF
# Services are up. Use:
export OPENSEARCH_URL=http://$HOST:$OPENSEARCH_PORT
export REDIS_URL=redis://$HOST:$REDIS_PORT/0
export AWS_ENDPOINT_URL=http://$HOST:$MOTO_PORT
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
# the Redis Cluster (tests read REDIS_CLUSTER_URL; REDIS_URL points syncer at it)
export REDIS_CLUSTER_URL=redis://$HOST:$(first_word "$REDIS_CLUSTER_PORTS")/0
EOF
    [ -z "$REDIS_CLUSTER_TLS_PORTS" ] \
        || echo "export REDIS_CLUSTER_TLS_URL=rediss://$HOST:$(first_word "$REDIS_CLUSTER_TLS_PORTS")/0"
}

cmd_up() {
    ensure_cmd curl curl
    ensure_cmd unzip unzip
    ensure_cmd redis-cli redis-tools
    ensure_cmd redis-server redis-server
    preflight ports_needed
    trap stop_started_now_on_failure EXIT
    redis_up
    cluster_up
    moto_up
    opensearch_up
    wait_all
    cluster_wait
    print_env
}

# Stops what the record says `up` started, then whatever the current variables name.
cmd_down() {
    stop_what_record_names
    moto_down
    redis_down
    cluster_down
    opensearch_down
}

# describe <pidfile>: "pid N, user U" for a live pid file, else a note.
describe() {
    local pidfile="$1" pid
    if pid_alive "$pidfile"; then
        pid="$(tr -dc '0-9' <"$pidfile")"
        printf 'pid %s, user %s' "$pid" "$(ps -o user= -p "$pid" 2>/dev/null | tr -d ' ')"
    else
        printf 'not started by this script'
    fi
}

cmd_status() {
    local rc=0 ver
    if opensearch_ready; then
        ver="$(curl -fsS -m 5 "http://$HOST:$OPENSEARCH_PORT/" 2>/dev/null \
            | sed -n 's/.*"number"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n1)"
        echo "opensearch: up   http://$HOST:$OPENSEARCH_PORT (version ${ver:-?}, $(describe "$OS_PIDFILE"))"
    else
        echo "opensearch: DOWN http://$HOST:$OPENSEARCH_PORT"; rc=1
    fi
    if redis_ready; then
        echo "redis:      up   redis://$HOST:$REDIS_PORT ($(describe "$REDIS_PIDFILE"))"
    else
        echo "redis:      DOWN redis://$HOST:$REDIS_PORT"; rc=1
    fi
    if moto_ready; then
        echo "moto:       up   http://$HOST:$MOTO_PORT ($(describe "$MOTO_PIDFILE"))"
    else
        echo "moto:       DOWN http://$HOST:$MOTO_PORT"; rc=1
    fi
    cluster_status || rc=1
    return "$rc"
}

usage() {
    cat >&2 <<EOF
usage: $0 {up|down|status|wait|cluster-up|cluster-down|cluster-status|lambda-runtime}
  up      start OpenSearch $OPENSEARCH_VERSION, Redis, the Redis Clusters and moto
          (idempotent), wait, print env. It first checks every port it needs (cluster
          nodes: port and port + 10000) and starts nothing if one is taken; an OpenSearch,
          Redis or moto already answering on its port is reused
  down    stop the services this script started (it keeps a record in $SERVICES_DIR/started),
          whatever the port variables say now
  status  one line per service; non-zero exit if any is down
  wait    wait (up to \$SERVICES_WAIT_TIMEOUT=${WAIT_TIMEOUT}s) until all services answer
  cluster-up      only the Redis Clusters: start missing nodes (a node a test stopped
                  rejoins), create the clusters when new, wait until every replica is in sync
                  (REDIS_CLUSTER_PORTS="$REDIS_CLUSTER_PORTS",
                  REDIS_CLUSTER_TLS_PORTS="$REDIS_CLUSTER_TLS_PORTS", empty for none)
  cluster-down    stop the Redis Clusters and forget them
  cluster-status  one line per cluster; non-zero exit if one is down
  lambda-runtime  build AWS's Runtime Interface Emulator (needs Go) and install awslambdaric
                  and boto3 (requirements/lambda-runtime.txt) into $LAMBDA_RUNTIME_DIR
EOF
    exit 2
}

case "${1:-}" in
    up|status|wait|cluster-up) check_port_variables ;;
esac

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    wait) ensure_cmd curl curl; wait_all; cluster_wait ;;
    cluster-up)
        ensure_cmd redis-cli redis-tools
        ensure_cmd redis-server redis-server
        preflight cluster_ports_needed_all
        trap stop_started_now_on_failure EXIT
        cluster_up
        cluster_wait ;;
    cluster-down) stop_what_record_names redis-cluster; cluster_down ;;
    cluster-status) cluster_status ;;
    lambda-runtime) lambda_runtime_up ;;
    *) usage ;;
esac
