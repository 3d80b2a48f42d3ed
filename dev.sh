#!/usr/bin/env bash
# Developer entry point. `./dev.sh up` runs the whole local stack; `./dev.sh test` runs every test.
#   ./dev.sh deps   install the system packages the build and the tests need (when missing);
#                   with EMS_TIMESCALEDB_SRC=path/timescaledb-<version>.tar.gz also TimescaleDB
#   ./dev.sh test   deps, build everything (driver .so files included), run all tests
#   ./dev.sh up     deps, build, start PostgreSQL + ems-cloud + ems-sim + ems-agent locally
#                   (`source .ems-local/env` then sets emsctl up for it in any shell)
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: PostgreSQL for the cloud and the tests, pkg-config/libudev for serial ports,
# Chromium for the dashboard's browser test, dpkg-dev for the Debian packages, HAProxy for the
# multi-instance failover test (the test starts its own; no service is enabled), tzdata for the
# IANA zones of daily schedule windows (read at run time from /usr/share/zoneinfo).
PACKAGES=(postgresql pkg-config libudev-dev chromium dpkg-dev haproxy tzdata)

deps() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}"
        local sudo=""
        [[ $(id -u) -eq 0 ]] || sudo="sudo"
        $sudo apt-get update -q
        # apt's temporary files in /var/tmp: tests clean up their own dirs in /tmp concurrently.
        TMPDIR=/var/tmp DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
    fi
    command -v node >/dev/null && command -v npm >/dev/null || {
        echo "Node.js 20.19+ and npm are needed for the dashboard (Debian's nodejs 18 is too old for Vite 7)" >&2
        exit 1
    }
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
        echo "PostgreSQL server binaries are missing under /usr/lib/postgresql/*/bin" >&2
        exit 1
    }
    timescaledb
}

# TimescaleDB: no Debian or crates registry carries it, so it is built from a source tarball
# given by EMS_TIMESCALEDB_SRC (CI passes ../shared/vendor/timescaledb-<version>.tar.gz) into the
# newest installed PostgreSQL, unless that version is installed already. Without a tarball and
# without the extension, ems-cloud and the tests use plain PostgreSQL (CI refuses that).
timescaledb() {
    local src=${EMS_TIMESCALEDB_SRC:-}
    local pgver
    pgver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
    if [[ -z $src ]]; then
        if [[ -f /usr/lib/postgresql/$pgver/lib/timescaledb.so ]]; then
            echo "TimescaleDB: installed"
        else
            echo "TimescaleDB: not installed (set EMS_TIMESCALEDB_SRC to its source tarball to build it); plain PostgreSQL only"
        fi
        return
    fi
    [[ -f $src ]] || { echo "EMS_TIMESCALEDB_SRC=$src: no such file" >&2; exit 1; }
    local version
    version=$(basename "$src" | sed -n 's/^timescaledb-\([0-9][0-9.]*[0-9]\)\.tar\.gz$/\1/p')
    [[ -n $version ]] || { echo "EMS_TIMESCALEDB_SRC=$src: expected a file named timescaledb-<version>.tar.gz" >&2; exit 1; }
    if [[ -f /usr/share/postgresql/$pgver/extension/timescaledb--$version.sql &&
          -f /usr/lib/postgresql/$pgver/lib/timescaledb-$version.so ]]; then
        echo "TimescaleDB $version: installed"
        return
    fi
    echo "TimescaleDB $version: building from $src into PostgreSQL $pgver (5-8 minutes on 2 cores)"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    # server-dev must match the installed server's version: both from the same update.
    $sudo apt-get update -q
    TMPDIR=/var/tmp DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
        "postgresql-$pgver" "postgresql-server-dev-$pgver" cmake gcc make libkrb5-dev
    local build
    build=$(mktemp -d /var/tmp/ems-timescaledb.XXXXXX)
    tar xzf "$src" -C "$build"
    # The compiler's warnings go to a log, shown only when the build fails.
    if ! (cd "$build/timescaledb-$version" &&
        ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DAPACHE_ONLY=OFF &&
        make -C build -j"$(nproc)" &&
        $sudo make -C build install) >"$build/build.log" 2>&1; then
        tail -n 40 "$build/build.log" >&2
        echo "building TimescaleDB failed; the whole log is $build/build.log" >&2
        exit 1
    fi
    rm -rf "$build"
    echo "TimescaleDB $version: installed (a server uses it with shared_preload_libraries = 'timescaledb')"
}

dashboard() {
    (cd dashboard && npm ci --no-audit --no-fund && npm run build && npm test)
}

run_tests() {
    # The dashboard's browser test serves dashboard/dist.
    dashboard
    # The driver plugins are cdylibs; the loader and agent tests load the real .so files, which
    # `cargo test` alone does not build.
    cargo build --workspace
    cargo test --workspace --no-fail-fast
}

up() {
    if [[ -x stack/run.sh ]]; then
        exec stack/run.sh "$@"
    fi
    echo "The one-command local stack is not yet available (issue: web dashboard, local stack and packaging)." >&2
    exit 2
}

case "${1:-}" in
    deps) deps ;;
    test) deps; run_tests ;;
    up) shift; deps; up "$@" ;;
    *) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
