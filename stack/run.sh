#!/usr/bin/env bash
# The whole ems stack on this machine, for trying it out and for development:
# a private PostgreSQL in .ems-local/, ems-cloud, ems-sim (a simulated site on pseudo-terminals)
# and ems-agent with the drivers from this build. Ctrl-C stops everything (the agent sets the
# battery to 0 W first). Running it again reuses the data, the device and the tokens.
#
# When it runs it writes $EMS_LOCAL_DIR/env: `source .ems-local/env` in any shell puts emsctl on
# the PATH and points it at this stack (URL, operator token, device), so `emsctl status` works
# as typed. A personal ~/.config/emsctl/config.toml is never touched.
#
# Options: --no-build       use the binaries already built (for tests; the dashboard is not built).
#          --instances N    N ems-cloud instances (2-9) sharing the database behind HAProxy on
#                           EMS_CLOUD_PORT, as packaging/README.md deploys them; the instances
#                           listen on EMS_CLOUD_INSTANCE_PORTS (space-separated, default the N
#                           ports after EMS_CLOUD_PORT). Stopping one (its pid is in
#                           $EMS_LOCAL_DIR/cloudK.pid) shows the failover; the stack goes on.
# Environment: EMS_LOCAL_DIR (state, default .ems-local), EMS_PG_PORT (55432),
# EMS_CLOUD_PORT (8000), EMS_PROFILE (debug | release, default debug), EMS_BIN_DIR (the built
# binaries and driver .so files, default target/$EMS_PROFILE).
set -euo pipefail
# Each component in its own process group: Ctrl-C reaches only this script, which then stops
# them in order (the agent must still reach the inverter to command 0 W).
set -m
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${EMS_LOCAL_DIR:-$ROOT/.ems-local}
PG_PORT=${EMS_PG_PORT:-55432}
CLOUD_PORT=${EMS_CLOUD_PORT:-8000}
PROFILE=${EMS_PROFILE:-debug}
DEVICE=sim_001
BIN=${EMS_BIN_DIR:-$ROOT/target/$PROFILE}
BUILD=1
INSTANCES=1
usage() { echo "usage: $0 [--no-build] [--instances N]" >&2; exit 2; }
while (($#)); do
    case $1 in
        --no-build) BUILD=0 ;;
        --instances) (($# > 1)) || usage; INSTANCES=$2; shift ;;
        --instances=*) INSTANCES=${1#*=} ;;
        *) usage ;;
    esac
    shift
done
[[ $INSTANCES =~ ^[1-9]$ ]] || { echo "--instances: $INSTANCES is not a number from 1 to 9" >&2; exit 2; }

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    step "stopping"
    # Reverse start order: the agent first (it commands 0 W on SIGTERM), PostgreSQL last.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
    echo "stopped; data kept in $STATE"
}
trap cleanup INT TERM EXIT

wait_port() { # host port what seconds
    local deadline=$((SECONDS + $4))
    until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
        ((SECONDS < deadline)) || die "$3 did not come up on $1:$2 (see $STATE/*.log)"
        sleep 0.2
    done
}

# Every component also gets a signal when this script dies, even by SIGKILL (a test that is
# killed, a closed terminal): no PostgreSQL or agent is left behind on the ports.
TERM_WITH_US=() INT_WITH_US=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
    TERM_WITH_US=(setpriv --pdeathsig TERM --)
    INT_WITH_US=(setpriv --pdeathsig INT --) # PostgreSQL's fast shutdown
fi

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)

if ((BUILD)); then
    step "building ($PROFILE)"
    if [[ $PROFILE == release ]]; then cargo build --workspace --release; else cargo build --workspace; fi
fi
for exe in ems-cloud ems-sim ems-agent emsctl; do
    [[ -x $BIN/$exe ]] || die "$BIN/$exe is missing: build the workspace first (cargo build --workspace)"
done

if ((BUILD)) && [[ -f dashboard/package.json ]]; then
    if command -v npm >/dev/null; then
        step "building the dashboard"
        if ! (cd dashboard && { [[ -d node_modules ]] || npm ci --no-audit --no-fund; } && npm run build); then
            echo "warning: the dashboard did not build; the API and emsctl work without it" >&2
        fi
    else
        echo "npm not found: the dashboard is not built (the API and emsctl work without it)"
    fi
fi

step "PostgreSQL on 127.0.0.1:$PG_PORT"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -n $PGBIN ]] || die "PostgreSQL server binaries not found; run ./dev.sh deps"
PGDATA=$STATE/pg
RUNAS=()
if [[ $(id -u) -eq 0 ]]; then
    # PostgreSQL refuses to run as root. Its data must be reachable by the postgres user, which
    # a checkout under /root is not: then the data lives in /var/tmp instead.
    if ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
        PGDATA=/var/tmp/ems-local-pg-$(printf '%s' "$STATE" | md5sum | cut -c1-8)
    fi
    RUNAS=(runuser -u postgres --)
fi
mkdir -p "$PGDATA"
[[ ${#RUNAS[@]} -eq 0 ]] || chown postgres: "$PGDATA"
chmod 700 "$PGDATA"
if [[ ! -f $PGDATA/PG_VERSION ]]; then
    "${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C >"$STATE/initdb.log"
fi
# TimescaleDB when it is installed (./dev.sh deps with EMS_TIMESCALEDB_SRC, or Timescale's
# package): the server must preload it, or ems-cloud stays on plain tables (and says so).
PGOPTS=(-c listen_addresses=127.0.0.1)
if [[ -f $PGBIN/../lib/timescaledb.so ]]; then
    PGOPTS+=(-c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off)
    echo "TimescaleDB found: preloading it"
else
    echo "TimescaleDB not installed: ems-cloud uses plain PostgreSQL tables (see README)"
fi
PGRUN=("${INT_WITH_US[@]}")
# runuser ignores SIGINT but passes SIGTERM on; it drops the parent-death signal with the user
# change, so postgres gets its own.
((${#RUNAS[@]} == 0)) || PGRUN=("${TERM_WITH_US[@]}" "${RUNAS[@]}" "${INT_WITH_US[@]}")
"${PGRUN[@]}" "$PGBIN/postgres" -D "$PGDATA" -p "$PG_PORT" -k "$PGDATA" "${PGOPTS[@]}" \
    >"$STATE/postgres.log" 2>&1 &
PIDS+=($!)
wait_port 127.0.0.1 "$PG_PORT" PostgreSQL 30
until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do sleep 0.2; done
"$PGBIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'ems'" | grep -q 1 ||
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres ems

export EMS_CLOUD_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/ems"
export ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT=$CLOUD_PORT ROCKET_LOG_LEVEL=critical
export EMS_CLOUD_DASHBOARD_DIR=$ROOT/dashboard/dist

# The parts whose exit stops the stack (PostgreSQL first); with several instances one may go.
ESSENTIAL=("${PIDS[0]}")
if ((INSTANCES == 1)); then
    step "ems-cloud on http://127.0.0.1:$CLOUD_PORT"
    "${TERM_WITH_US[@]}" "$BIN/ems-cloud" serve >"$STATE/cloud.log" 2>&1 &
    PIDS+=($!) ESSENTIAL+=($!)
    wait_port 127.0.0.1 "$CLOUD_PORT" ems-cloud 60
else
    HAPROXY=$(command -v haproxy || ls /usr/sbin/haproxy 2>/dev/null) ||
        die "--instances needs HAProxy (./dev.sh deps installs Debian's haproxy)"
    read -r -a INSTANCE_PORTS <<<"${EMS_CLOUD_INSTANCE_PORTS:-}"
    SERVERS=""
    for ((i = 1; i <= INSTANCES; i++)); do
        port=${INSTANCE_PORTS[i - 1]:-$((CLOUD_PORT + i))}
        step "ems-cloud instance cloud$i on http://127.0.0.1:$port"
        # ems-cloud also reads EMS_CLOUD_* as its settings: EMS_CLOUD_PORT would be its port.
        ROCKET_PORT=$port EMS_CLOUD_PORT=$port EMS_CLOUD_INSTANCE_ID=cloud$i \
            "${TERM_WITH_US[@]}" "$BIN/ems-cloud" serve >"$STATE/cloud$i.log" 2>&1 &
        PIDS+=($!)
        echo $! >"$STATE/cloud$i.pid"
        wait_port 127.0.0.1 "$port" "ems-cloud instance cloud$i" 60
        SERVERS+="  server cloud$i 127.0.0.1:$port check"$'\n'
    done
    # What packaging/README.md deploys, on loopback and without TLS: HTTP mode (WebSocket
    # upgrades become tunnels), health checks on /api/v1/health, a failed connect redispatched.
    cat >"$STATE/haproxy.cfg" <<CFG
global
  log stderr format short local0 warning
defaults
  mode http
  log global
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  retries 3
  option redispatch
frontend ems
  bind 127.0.0.1:$CLOUD_PORT
  default_backend clouds
backend clouds
  balance roundrobin
  option httpchk GET /api/v1/health
  http-check expect status 200
  default-server inter 1s fall 2 rise 2
$SERVERS
CFG
    "$HAPROXY" -c -q -f "$STATE/haproxy.cfg" || die "HAProxy refused $STATE/haproxy.cfg"
    step "HAProxy on http://127.0.0.1:$CLOUD_PORT in front of $INSTANCES instances"
    "${TERM_WITH_US[@]}" "$HAPROXY" -db -f "$STATE/haproxy.cfg" >"$STATE/haproxy.log" 2>&1 &
    PIDS+=($!) ESSENTIAL+=($!)
    wait_port 127.0.0.1 "$CLOUD_PORT" HAProxy 30
fi
if [[ ! -s $STATE/$DEVICE.token ]]; then
    "$BIN/ems-cloud" add-device "$DEVICE" --name "Simulated site" >"$STATE/$DEVICE.token.new" 2>>"$STATE/cloud.log" ||
        die "cannot register $DEVICE; if it exists but $STATE/$DEVICE.token was lost (tokens are shown once), start afresh: rm -rf $STATE $PGDATA"
    mv "$STATE/$DEVICE.token.new" "$STATE/$DEVICE.token"
fi
chmod 600 "$STATE/$DEVICE.token"
if [[ ! -s $STATE/operator.token ]]; then
    "$BIN/ems-cloud" create-token --role operator --name local-operator >"$STATE/operator.token" 2>>"$STATE/cloud.log"
    chmod 600 "$STATE/operator.token"
fi

step "ems-sim (simulated site) in $STATE/sim"
"${TERM_WITH_US[@]}" "$BIN/ems-sim" --dir "$STATE/sim" >"$STATE/sim.log" 2>&1 &
PIDS+=($!) ESSENTIAL+=($!)
for _ in $(seq 100); do [[ -S $STATE/sim/i2c.sock ]] && break; sleep 0.1; done
[[ -S $STATE/sim/i2c.sock ]] || die "ems-sim did not start (see $STATE/sim.log)"

step "ems-agent"
sed -e "s|^data_dir = .*|data_dir = \"$STATE/agent\"|" \
    -e "s|^driver_dir = .*|driver_dir = \"$BIN\"|" \
    -e "s|^url = .*|url = \"ws://127.0.0.1:$CLOUD_PORT\"|" \
    -e "s|^token_file = .*|token_file = \"$STATE/$DEVICE.token\"|" \
    -e "s|^port = .*|port = \"$STATE/sim/rs485\"|" \
    -e "s|^path = .*|path = \"$STATE/sim/i2c.sock\"|" \
    config/sim.toml >"$STATE/agent.toml"
"$BIN/ems-agent" --config "$STATE/agent.toml" check-config >/dev/null
EMS_LOG=${EMS_LOG:-warn} "${TERM_WITH_US[@]}" "$BIN/ems-agent" --config "$STATE/agent.toml" run >"$STATE/agent.log" 2>&1 &
PIDS+=($!) ESSENTIAL+=($!)

OPERATOR=$(cat "$STATE/operator.token")

# emsctl's settings for this stack in a file of its own (a personal config is left alone), and an
# env file that points emsctl at it; rewritten on every start, as the port may have changed.
(
    umask 077
    printf 'url = "http://127.0.0.1:%s"\ntoken = "%s"\ndevice = "%s"\n' \
        "$CLOUD_PORT" "$OPERATOR" "$DEVICE" >"$STATE/emsctl.toml.new"
    mv "$STATE/emsctl.toml.new" "$STATE/emsctl.toml"
)
cat >"$STATE/env.new" <<ENV
# \`source $STATE/env\`: emsctl (and the other ems programs) on the PATH, set up for the local
# stack in $STATE. Written by stack/run.sh.
case ":\$PATH:" in *:$(printf %q "$BIN"):*) ;; *) export PATH=$(printf %q "$BIN"):"\$PATH" ;; esac
export EMSCTL_CONFIG=$(printf %q "$STATE/emsctl.toml")
# These would take precedence over the file: in this shell emsctl talks to the local stack.
unset EMS_URL EMS_TOKEN EMS_DEVICE EMS_CA_FILE
ENV
mv "$STATE/env.new" "$STATE/env"

cat <<MSG

ems is running.
  Dashboard:       http://127.0.0.1:$CLOUD_PORT/
  Operator token:  $OPERATOR
  In any shell:    source $(printf %q "$STATE/env")
  Then try:        emsctl set-mode MANUAL_DISCHARGE --power 500
                   emsctl status
                   emsctl watch
  Inject a fault:  ems-sim --dir $(printf %q "$STATE/sim") --send 'temperature 60'   (see sim/README.md)
  Logs:            $STATE/{postgres,cloud,sim,agent}.log
MSG
if ((INSTANCES > 1)); then
    cat <<MSG
  Instances:       $INSTANCES behind HAProxy ($STATE/haproxy.cfg); logs $STATE/cloudK.log
  Failover:        kill \$(cat $(printf %q "$STATE/cloud1.pid"))   (the agent moves to another instance)
MSG
fi
echo "Ctrl-C stops everything."

# Stop everything as soon as an essential part exits (PostgreSQL, ems-sim, the agent, the
# single ems-cloud or HAProxy; with several instances, one instance may stop).
set +e
wait -n "${ESSENTIAL[@]}"
status=$?
((status > 128)) || echo "a component exited (status $status); see the logs in $STATE" >&2
exit 1
