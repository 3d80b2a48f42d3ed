#!/usr/bin/env bash
# Tests the Debian packages: builds them (packaging/build.sh), then checks what each one holds
# and that what it holds works. Prints one line per check (ok / FAIL / skipped) and exits 1 if any
# check failed.
#
#   packaging/test.sh              # build, then test
#   packaging/test.sh --no-build   # test the packages already in target/debian
#
# What is checked:
#   - control fields (Package, Version, Architecture, Maintainer, Description, Depends from $auto),
#     conffiles, the file list and modes, maintainer scripts (syntax; nothing enabled or started);
#   - the systemd units: `systemd-analyze verify` in a root holding the package files (installs
#     systemd with apt-get when missing and run as root), `systemd-analyze security` score, and a
#     textual check of the keys the units must have;
#   - from the agent package unpacked with dpkg -x: every driver .so exports
#     ems_driver_entry_v1; `ems-agent check-config` accepts the packaged /etc/ems/agent.toml;
#     `generate-config` prints that same file; `ems-agent probe` with the packaged drivers reads
#     every device of the simulated site (ems-sim, real Modbus RTU on a pseudo-terminal);
#   - from the cloud and emsctl packages: ems-cloud reads the packaged /etc/ems-cloud/cloud.toml,
#     creates an admin token and serves the API and the packaged dashboard against a throwaway
#     PostgreSQL (skipped without PostgreSQL); the packaged emsctl lists devices through it; the
#     completions and man pages are well-formed;
#   - as root, when none of the packages is installed yet (EMS_PACKAGING_INSTALL=0 skips it):
#     dpkg -i of the three packages (user ems in dialout and i2c, /var/lib/ems, nothing enabled),
#     then dpkg --purge (files and state gone; the system users stay, as Debian does).
# `cond && ok … || fail …` is safe here: ok always returns 0.
# shellcheck disable=SC2015
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

build=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$root/packaging/test.sh" | grep -v 'shellcheck\|ok always returns' | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

failures=0
passed=0
skipped=0
ok() { printf 'ok      %s\n' "$*"; passed=$((passed + 1)); }
fail() { printf 'FAIL    %s\n' "$*"; failures=$((failures + 1)); }
skip() { printf 'skipped: %s\n' "$*"; skipped=$((skipped + 1)); }
section() { printf '\n## %s\n' "$*"; }
# check DESCRIPTION COMMAND...: ok if the command succeeds, FAIL (with its output) otherwise.
check() {
    local what="$1" out
    shift
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        fail "$what"
        [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/        /' | head -40
    fi
}

tmp=$(mktemp -d /tmp/ems-packaging-test.XXXXXX)
chmod 755 "$tmp"   # PostgreSQL runs as another user under it
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    if [ -f "$tmp/pg/data/postmaster.pid" ]; then
        as_pg "$pg_bin/pg_ctl" -D "$tmp/pg/data" -m immediate stop >/dev/null 2>&1
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Waits up to $1 seconds for the command to succeed (no fixed sleeps).
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.1
    done
}

if [ $build = 1 ]; then
    section "build (packaging/build.sh)"
    if packaging/build.sh; then ok "packaging/build.sh"; else fail "packaging/build.sh"; exit 1; fi
fi

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
deb() { echo "$target_dir/debian/$1_${version}-1_${arch}.deb"; }

# --- control data, file lists, maintainer scripts --------------------------------------------

field() { dpkg-deb --field "$2" "$1" 2>/dev/null; }
has_file() { grep -qxF "$2" "$tmp/$1.list"; }
mode_of() { awk -v p="./$2" '$6 == p { print $1 }' "$tmp/$1.contents"; }

declare -A expected_files=(
    [ems-agent]="usr/bin/ems-agent
usr/lib/ems/drivers/libems_driver_sunspec.so
usr/lib/ems/drivers/libems_driver_sdm630.so
usr/lib/ems/drivers/libems_driver_ina226.so
usr/lib/ems/drivers/libems_driver_modbus_map.so
usr/share/ems/devices/sdm630.toml
etc/ems/agent.toml
usr/lib/systemd/system/ems-agent.service
usr/share/doc/ems-agent/README.md
usr/share/doc/ems-agent/copyright
usr/share/doc/ems-agent/examples/pi-rs485-i2c.toml
usr/share/doc/ems-agent/examples/99-ems-rs485.rules"
    [ems-cloud]="usr/bin/ems-cloud
etc/ems-cloud/cloud.toml
usr/lib/systemd/system/ems-cloud.service
usr/share/doc/ems-cloud/README.md
usr/share/doc/ems-cloud/copyright"
    [emsctl]="usr/bin/emsctl
usr/share/bash-completion/completions/emsctl
usr/share/zsh/vendor-completions/_emsctl
usr/share/fish/vendor_completions.d/emsctl.fish
usr/share/man/man1/emsctl.1.gz
usr/share/man/man1/emsctl-set-mode.1.gz
usr/share/doc/emsctl/copyright"
)
declare -A expected_conffiles=(
    [ems-agent]="/etc/ems/agent.toml"
    [ems-cloud]="/etc/ems-cloud/cloud.toml"
    [emsctl]=""
)
declare -A expected_depends=(
    [ems-agent]="adduser tzdata"
    [ems-cloud]="adduser tzdata"
    [emsctl]=""
)

for package in ems-agent ems-cloud emsctl; do
    file=$(deb "$package")
    section "$package: $(basename "$file")"
    if [ ! -f "$file" ]; then
        fail "$file exists"
        continue
    fi
    ok "$file exists ($(du -h "$file" | cut -f1))"
    check "dpkg-deb --info reads it" dpkg-deb --info "$file"

    [ "$(field Package "$file")" = "$package" ] && ok "Package: $package" \
        || fail "Package is '$(field Package "$file")', expected $package"
    [ "$(field Version "$file")" = "$version-1" ] && ok "Version: $version-1 (workspace version)" \
        || fail "Version is '$(field Version "$file")', expected $version-1"
    [ "$(field Architecture "$file")" = "$arch" ] && ok "Architecture: $arch" \
        || fail "Architecture is '$(field Architecture "$file")', expected $arch"
    maintainer=$(field Maintainer "$file")
    [[ "$maintainer" =~ ^[^\<]+\ \<[^@\>]+@[^\>]+\>$ ]] && ok "Maintainer: $maintainer" \
        || fail "Maintainer '$maintainer' is not 'Name <address>'"
    description=$(field Description "$file")
    [ "$(printf '%s\n' "$description" | wc -l)" -ge 2 ] && ok "Description: $(head -1 <<< "$description")" \
        || fail "Description lacks a summary and an extended description"
    depends=$(field Depends "$file")
    # $auto: dpkg-shlibdeps' libc6 with a version (cargo-deb leaves out libgcc-s1, always present).
    [[ "$depends" =~ libc6\ \(\>=\ [0-9.]+\) ]] && ok "Depends from \$auto: $depends" \
        || fail "Depends '$depends' lacks the \$auto libc6 (>= …)"
    for dep in ${expected_depends[$package]}; do
        [[ ", $depends," == *", $dep,"* || ", $depends," == *", $dep "* ]] && ok "Depends on $dep" \
            || fail "Depends '$depends' lacks $dep"
    done

    dpkg-deb --contents "$file" > "$tmp/$package.contents"
    awk '$1 !~ /^d/ { sub(/^\.\//, "", $6); print $6 }' "$tmp/$package.contents" > "$tmp/$package.list"
    missing=0
    while read -r path; do
        has_file "$package" "$path" || { fail "contains /$path"; missing=1; }
    done <<< "${expected_files[$package]}"
    [ $missing = 0 ] && ok "contains the $(wc -l <<< "${expected_files[$package]}") expected files ($(wc -l < "$tmp/$package.list") in all)"

    conffiles=$(dpkg-deb --ctrl-tarfile "$file" | tar -xOf - ./conffiles 2>/dev/null || true)
    [ "$conffiles" = "${expected_conffiles[$package]}" ] \
        && ok "conffiles: ${conffiles:-none}" \
        || fail "conffiles are '$conffiles', expected '${expected_conffiles[$package]}'"

    mkdir -p "$tmp/control/$package"
    dpkg-deb --control "$file" "$tmp/control/$package"
    for script in preinst postinst prerm postrm; do
        [ -f "$tmp/control/$package/$script" ] || continue
        check "$script is valid sh" sh -n "$tmp/control/$package/$script"
    done
    if [ -f "$tmp/control/$package/postinst" ]; then
        if grep -v '^[[:space:]]*#' "$tmp/control/$package/postinst" \
            | grep -Eq 'deb-systemd-invoke (start|restart) |systemctl (start|enable)'; then
            fail "postinst starts or enables a service"
        else
            ok "postinst neither enables nor starts a service (an upgrade only try-restarts a running one)"
        fi
    fi

    mkdir -p "$tmp/root/$package"
    check "dpkg -x unpacks it" dpkg -x "$file" "$tmp/root/$package"
done

agent_root="$tmp/root/ems-agent"
cloud_root="$tmp/root/ems-cloud"
ctl_root="$tmp/root/emsctl"

section "ems-agent: files"
[ "$(mode_of ems-agent usr/bin/ems-agent)" = "-rwxr-xr-x" ] && ok "/usr/bin/ems-agent is 755" \
    || fail "/usr/bin/ems-agent mode is $(mode_of ems-agent usr/bin/ems-agent)"
grep -q 'addgroup --system --quiet i2c' "$tmp/control/ems-agent/postinst" \
    && grep -q 'adduser --system' "$tmp/control/ems-agent/postinst" \
    && ok "postinst creates the system user ems and the i2c group" \
    || fail "postinst does not create the user ems and the group i2c"
for so in "$agent_root"/usr/lib/ems/drivers/*.so; do
    name=$(basename "$so")
    if nm -D --defined-only "$so" | grep -qE ' T ems_driver_entry_v1$'; then
        ok "$name exports ems_driver_entry_v1 (nm -D)"
    else
        fail "$name does not export ems_driver_entry_v1"
    fi
done
[ "$(ls "$agent_root"/usr/lib/ems/drivers/*.so | wc -l)" = 4 ] && ok "four driver plugins" \
    || fail "expected four driver plugins, found $(ls "$agent_root"/usr/lib/ems/drivers/)"

section "ems-agent: the packaged binary and config"
agent="$agent_root/usr/bin/ems-agent"
check "ems-agent --version" "$agent" --version
if out=$("$agent" check-config --config "$agent_root/etc/ems/agent.toml" 2>&1) && grep -q ': valid$' <<< "$out"; then
    ok "ems-agent check-config --config <root>/etc/ems/agent.toml: valid"
else
    fail "ems-agent check-config --config <root>/etc/ems/agent.toml"; printf '%s\n' "$out" | sed 's/^/        /'
fi
check "ems-agent check-config accepts the Raspberry Pi example (examples/pi-rs485-i2c.toml)" \
    "$agent" check-config --config "$agent_root/usr/share/doc/ems-agent/examples/pi-rs485-i2c.toml"
if "$agent" generate-config > "$tmp/generated.toml" 2>"$tmp/generate.err"; then
    ok "ems-agent generate-config"
    check "generate-config prints the packaged /etc/ems/agent.toml" cmp "$tmp/generated.toml" "$agent_root/etc/ems/agent.toml"
    check "check-config accepts the generated config" "$agent" check-config --config "$tmp/generated.toml"
else
    fail "ems-agent generate-config"; sed 's/^/        /' "$tmp/generate.err"
fi

# The packaged agent and drivers against the simulated site: RS-485 (SunSpec inverter + SDM630)
# on a pseudo-terminal and the INA226 on the simulated I2C bus.
sim="$target_dir/release/ems-sim"
cargo build --release -p ems-sim >"$tmp/sim-build.log" 2>&1 \
    || { fail "cargo build --release -p ems-sim"; tail -20 "$tmp/sim-build.log"; }
if [ -x "$sim" ]; then
    "$sim" --dir "$tmp/sim" >"$tmp/sim.log" 2>&1 &
    pids+=($!)
    if wait_for 20 test -e "$tmp/sim/rs485" -a -S "$tmp/sim/i2c.sock"; then
        mkdir -p "$tmp/agent-data"
        sed -e "s#^data_dir = .*#data_dir = \"$tmp/agent-data\"#" \
            -e "s#^driver_dir = .*#driver_dir = \"$agent_root/usr/lib/ems/drivers\"#" \
            -e "s#/tmp/ems-sim#$tmp/sim#" \
            -e '/^\[uplink\]/,/^$/d' config/sim.toml > "$tmp/agent-sim.toml"
        if out=$(timeout 60 "$agent" --config "$tmp/agent-sim.toml" probe 2>"$tmp/probe.err"); then
            n=$(grep -cE '^    "(inverter|grid_meter|battery_shunt)": \{' <<< "$out")
            [ "$n" = 3 ] && ok "ems-agent probe with the packaged drivers reads the 3 simulated devices" \
                || { fail "ems-agent probe printed $n of 3 devices"; printf '%s\n' "$out" | head -20; }
        else
            fail "ems-agent probe against ems-sim"; tail -20 "$tmp/probe.err" | sed 's/^/        /'
        fi
    else
        fail "ems-sim did not create $tmp/sim/rs485 and i2c.sock"; tail -20 "$tmp/sim.log"
    fi
fi

section "systemd units"
units_root="$tmp/units-root"
mkdir -p "$units_root"
dpkg -x "$(deb ems-agent)" "$units_root"
dpkg -x "$(deb ems-cloud)" "$units_root"
if ! command -v systemd-analyze >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "systemd-analyze missing: apt-get install -y --no-install-recommends systemd"
    apt-get install -y --no-install-recommends systemd >"$tmp/apt.log" 2>&1 \
        || { apt-get update >>"$tmp/apt.log" 2>&1 && apt-get install -y --no-install-recommends systemd >>"$tmp/apt.log" 2>&1; } \
        || echo "apt-get install systemd failed (see above); textual checks only"
fi
if command -v systemd-analyze >/dev/null; then
    # verify resolves dependencies (sysinit.target, network-online.target…) and ExecStart= in the
    # root: give it the system's own units next to the package's. It exits 0 on unknown keys and
    # bad values, only warning: any output is a failure.
    cp -an /usr/lib/systemd/system/. "$units_root/usr/lib/systemd/system/" 2>/dev/null
    [ -d /lib/systemd/system ] && cp -an /lib/systemd/system/. "$units_root/usr/lib/systemd/system/" 2>/dev/null
    for unit in ems-agent.service ems-cloud.service; do
        if out=$(systemd-analyze verify --root="$units_root" "$unit" 2>&1) && [ -z "$out" ]; then
            ok "systemd-analyze verify $unit ($(systemd-analyze --version | head -1))"
        else
            fail "systemd-analyze verify $unit"; printf '%s\n' "$out" | sed 's/^/        /'
        fi
        score=$(systemd-analyze security --offline=yes --root="$units_root" "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: //p')
        if [ -n "$score" ]; then ok "systemd-analyze security $unit: exposure $score"; else skip "systemd-analyze security $unit: this systemd has no --offline"; fi
    done
else
    skip "systemd-analyze not installed: no systemd-analyze verify (textual check of the keys below only)"
fi
# Textual check, always: the keys the units must carry (issue 8).
unit_has() { grep -qxF "$2" "$units_root/usr/lib/systemd/system/$1"; }
lacking=0
for key in Type=notify WatchdogSec=30s Restart=on-failure User=ems "SupplementaryGroups=dialout i2c" \
    StateDirectory=ems ReadWritePaths=/var/lib/ems ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes \
    PrivateTmp=yes DevicePolicy=closed "DeviceAllow=char-ttyUSB rw" "DeviceAllow=char-ttyAMA rw" \
    "DeviceAllow=char-i2c rw" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" CapabilityBoundingSet= \
    SystemCallFilter=@system-service KillSignal=SIGTERM TimeoutStopSec=20s \
    "ExecStart=/usr/bin/ems-agent --config /etc/ems/agent.toml run"; do
    unit_has ems-agent.service "$key" || { fail "ems-agent.service lacks '$key'"; lacking=1; }
done
[ $lacking = 0 ] && ok "ems-agent.service has Type=notify, WatchdogSec, User=ems, groups, hardening, DeviceAllow"
lacking=0
for key in Type=simple Environment=EMS_CLOUD_CONFIG=/etc/ems-cloud/cloud.toml User=ems-cloud \
    Restart=on-failure ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes PrivateTmp=yes \
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" CapabilityBoundingSet= SystemCallFilter=@system-service \
    "After=network-online.target postgresql.service" "ExecStart=/usr/bin/ems-cloud serve"; do
    unit_has ems-cloud.service "$key" || { fail "ems-cloud.service lacks '$key'"; lacking=1; }
done
[ $lacking = 0 ] && ok "ems-cloud.service has Type=simple, EMS_CLOUD_CONFIG, User=ems-cloud, After=postgresql, hardening"
if grep -Eq '^SUBSYSTEM=="tty",.*ATTRS\{idVendor\}=="[0-9a-f]{4}".*SYMLINK\+="rs485".*GROUP="dialout"' packaging/udev/99-ems-rs485.rules; then
    ok "udev example gives an adapter (idVendor/idProduct/serial) the name /dev/rs485, group dialout"
else
    fail "packaging/udev/99-ems-rs485.rules has no active rule naming /dev/rs485"
fi

section "ems-cloud: the packaged binary, config and dashboard"
cloud="$cloud_root/usr/bin/ems-cloud"
cloud_toml="$cloud_root/etc/ems-cloud/cloud.toml"
check "ems-cloud --version" "$cloud" --version
grep -qx 'dashboard_dir = "/usr/share/ems-cloud/dashboard"' "$cloud_toml" \
    && ok "cloud.toml: dashboard_dir = \"/usr/share/ems-cloud/dashboard\"" \
    || fail "cloud.toml does not set dashboard_dir to the packaged dashboard"
lacking=0
for key in database_url address port '\[default.tls\]' certs key; do
    grep -Eq "^#? ?$key( =|$)" "$cloud_toml" || { fail "cloud.toml does not document $key"; lacking=1; }
done
[ $lacking = 0 ] && ok "cloud.toml documents database_url, address, port and TLS (certs, key)"
if has_file ems-cloud usr/share/ems-cloud/dashboard/index.html; then
    n=$(grep -c '^usr/share/ems-cloud/dashboard/' "$tmp/ems-cloud.list")
    ok "dashboard packaged in /usr/share/ems-cloud/dashboard ($n files)"
elif has_file ems-cloud usr/share/ems-cloud/dashboard/NOT-BUILT.txt; then
    skip "no dashboard in the package (built without npm or dashboard/dist; NOT-BUILT.txt in its place)"
else
    fail "no dashboard and no NOT-BUILT.txt in /usr/share/ems-cloud/dashboard"
fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
    return 1
}
if [ -z "$pg_bin" ] || { [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; }; then
    skip "PostgreSQL not installed: no ems-cloud run against it (apt-get install postgresql)"
else
    mkdir -p "$tmp/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$tmp/pg"
    pg_port=$(free_port)
    if as_pg "$pg_bin/initdb" -D "$tmp/pg/data" -A trust -U postgres >"$tmp/pg.log" 2>&1 \
        && as_pg "$pg_bin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/log" -w \
            -o "-p $pg_port -k $tmp/pg -c listen_addresses=''" start >>"$tmp/pg.log" 2>&1 \
        && as_pg "$pg_bin/createuser" -h "$tmp/pg" -p "$pg_port" -U postgres ems-cloud >>"$tmp/pg.log" 2>&1 \
        && as_pg "$pg_bin/createdb" -h "$tmp/pg" -p "$pg_port" -U postgres -O ems-cloud ems >>"$tmp/pg.log" 2>&1; then
        ok "throwaway PostgreSQL on a Unix socket, user ems-cloud, database ems (as the README says)"
        # The packaged config, with only the socket directory and port of this throwaway server
        # changed: the same URL form as the conffile's (Unix socket, user ems-cloud, db ems).
        export EMS_CLOUD_CONFIG="$cloud_toml"
        export EMS_CLOUD_DATABASE_URL="postgresql:///ems?host=$tmp/pg&port=$pg_port&user=ems-cloud"
        export EMS_CLOUD_DASHBOARD_DIR="$cloud_root/usr/share/ems-cloud/dashboard"
        if token=$("$cloud" create-token --role admin --name packaging-test 2>"$tmp/token.err") && [[ "$token" == emsa_* ]]; then
            ok "ems-cloud create-token --role admin (packaged cloud.toml; migrations applied)"
        else
            fail "ems-cloud create-token --role admin"; sed 's/^/        /' "$tmp/token.err"
        fi
        http_port=$(free_port)
        ROCKET_PORT=$http_port "$cloud" serve >"$tmp/cloud.log" 2>&1 &
        pids+=($!)
        base="http://127.0.0.1:$http_port"
        if wait_for 30 curl -fsS "$base/api/v1/health"; then
            ok "ems-cloud serve answers GET /api/v1/health ($(curl -fsS "$base/api/v1/health"))"
            if has_file ems-cloud usr/share/ems-cloud/dashboard/index.html; then
                curl -fsS "$base/" | grep -qi '<html' && ok "GET / serves the packaged dashboard's index.html" \
                    || fail "GET / does not serve the packaged dashboard"
            fi
            ctl="$ctl_root/usr/bin/emsctl"
            check "packaged emsctl devices add ems_001 through it" \
                "$ctl" --url "$base" --token "$token" devices add ems_001 --name packaging-test
            if out=$("$ctl" --url "$base" --token "$token" -o json devices list 2>&1) \
                && grep -q '"ems_001"' <<< "$out"; then
                ok "packaged emsctl devices list shows ems_001"
            else
                fail "packaged emsctl devices list"; printf '%s\n' "$out" | sed 's/^/        /'
            fi
        else
            fail "ems-cloud serve did not answer /api/v1/health within 30 s"; tail -20 "$tmp/cloud.log" | sed 's/^/        /'
        fi
        unset EMS_CLOUD_CONFIG EMS_CLOUD_DATABASE_URL EMS_CLOUD_DASHBOARD_DIR
    else
        fail "starting a throwaway PostgreSQL"; tail -20 "$tmp/pg.log" | sed 's/^/        /'
    fi
fi

section "emsctl: completions and man pages"
check "emsctl --version" "$ctl_root/usr/bin/emsctl" --version
check "bash completion parses (bash -n)" bash -n "$ctl_root/usr/share/bash-completion/completions/emsctl"
grep -q '^#compdef emsctl' "$ctl_root/usr/share/zsh/vendor-completions/_emsctl" \
    && ok "zsh completion starts with #compdef emsctl" || fail "zsh completion lacks #compdef emsctl"
grep -q '^complete -c emsctl' "$ctl_root/usr/share/fish/vendor_completions.d/emsctl.fish" \
    && ok "fish completion has complete -c emsctl" || fail "fish completion lacks complete -c emsctl"
if command -v fish >/dev/null; then
    check "fish completion parses (fish -n)" fish -n "$ctl_root/usr/share/fish/vendor_completions.d/emsctl.fish"
fi
if command -v zsh >/dev/null; then
    check "zsh completion parses (zsh -n)" zsh -n "$ctl_root/usr/share/zsh/vendor-completions/_emsctl"
fi
bad=0
for page in "$ctl_root"/usr/share/man/man1/*.1.gz; do
    zcat "$page" | grep -q '^\.TH' || { fail "$(basename "$page") is not a gzipped man page"; bad=1; }
done
[ $bad = 0 ] && ok "$(ls "$ctl_root"/usr/share/man/man1/*.1.gz | wc -l) man pages, gzipped, each with .TH"

section "install and purge on this machine (dpkg -i, dpkg --purge)"
if [ "$(id -u)" != 0 ]; then
    skip "not root: no dpkg -i / dpkg --purge test"
elif [ "${EMS_PACKAGING_INSTALL:-1}" = 0 ]; then
    skip "EMS_PACKAGING_INSTALL=0: no dpkg -i / dpkg --purge test"
elif dpkg -s ems-agent >/dev/null 2>&1 || dpkg -s ems-cloud >/dev/null 2>&1 || dpkg -s emsctl >/dev/null 2>&1 \
    || [ -e /usr/bin/ems-agent ] || [ -e /usr/bin/ems-cloud ] || [ -e /usr/bin/emsctl ] || [ -e /etc/ems ]; then
    skip "ems is already installed here (or /etc/ems exists): no dpkg -i / dpkg --purge test, not touching it"
else
    if dpkg -i "$(deb ems-agent)" "$(deb ems-cloud)" "$(deb emsctl)" >"$tmp/dpkg.log" 2>&1; then
        ok "dpkg -i ems-agent ems-cloud emsctl"
        id -nG ems 2>/dev/null | tr ' ' '\n' | grep -qx dialout && id -nG ems | tr ' ' '\n' | grep -qx i2c \
            && ok "user ems exists, in groups dialout and i2c ($(id ems))" || fail "user ems in dialout and i2c"
        getent passwd ems | grep -q ':/usr/sbin/nologin$' && ok "ems has no login shell" || fail "ems has a login shell"
        id ems-cloud >/dev/null 2>&1 && ok "user ems-cloud exists" || fail "user ems-cloud exists"
        [ "$(stat -c '%U %a' /var/lib/ems 2>/dev/null)" = "ems 750" ] && ok "/var/lib/ems: owner ems, mode 750" \
            || fail "/var/lib/ems is '$(stat -c '%U %a' /var/lib/ems 2>&1)', expected 'ems 750'"
        [ "$(stat -c '%G %a' /etc/ems-cloud/cloud.toml)" = "ems-cloud 640" ] && ok "/etc/ems-cloud/cloud.toml: group ems-cloud, mode 640" \
            || fail "/etc/ems-cloud/cloud.toml is '$(stat -c '%G %a' /etc/ems-cloud/cloud.toml)', expected 'ems-cloud 640'"
        if ls /etc/systemd/system/*.wants/ems-agent.service /etc/systemd/system/*.wants/ems-cloud.service >/dev/null 2>&1; then
            fail "a unit was enabled by the installation"
        else
            ok "neither unit is enabled after installation"
        fi
        check "installed ems-agent check-config (default path /etc/ems/agent.toml)" /usr/bin/ems-agent check-config
        check "installed ems-agent check-config as the ems user" runuser -u ems -- /usr/bin/ems-agent check-config
        check "man emsctl finds the page" sh -c 'MANPATH=/usr/share/man man -w emsctl 2>/dev/null || test -f /usr/share/man/man1/emsctl.1.gz'
        # Debian-style conffile handling: an edited conffile survives a reinstall of the same
        # version untouched.
        echo '# edited by packaging/test.sh' >> /etc/ems/agent.toml
        dpkg -i "$(deb ems-agent)" >>"$tmp/dpkg.log" 2>&1 && grep -q 'edited by packaging/test.sh' /etc/ems/agent.toml \
            && ok "an edited /etc/ems/agent.toml survives reinstalling the package" \
            || fail "reinstall lost the edit to /etc/ems/agent.toml"
        echo secret > /etc/ems/device.token
        chmod 644 /etc/ems/device.token
        dpkg-reconfigure ems-agent >>"$tmp/dpkg.log" 2>&1 || dpkg --configure --force-all ems-agent >>"$tmp/dpkg.log" 2>&1
        [ "$(stat -c '%U %a' /etc/ems/device.token)" = "ems 600" ] && ok "postinst makes /etc/ems/device.token owner ems, mode 600" \
            || fail "/etc/ems/device.token is '$(stat -c '%U %a' /etc/ems/device.token)' after postinst, expected 'ems 600'"
    else
        fail "dpkg -i"; tail -30 "$tmp/dpkg.log" | sed 's/^/        /'
    fi
    if dpkg --purge emsctl ems-cloud ems-agent >>"$tmp/dpkg.log" 2>&1; then
        ok "dpkg --purge emsctl ems-cloud ems-agent"
        leftovers=$(ls -d /usr/bin/ems-agent /usr/bin/ems-cloud /usr/bin/emsctl /usr/lib/ems /etc/ems /etc/ems-cloud \
            /var/lib/ems /usr/lib/systemd/system/ems-agent.service /usr/share/ems-cloud 2>/dev/null)
        [ -z "$leftovers" ] && ok "nothing left behind (binaries, drivers, /etc/ems, /var/lib/ems, units)" \
            || fail "left behind after purge: $leftovers"
    else
        fail "dpkg --purge"; tail -30 "$tmp/dpkg.log" | sed 's/^/        /'
    fi
fi

section "summary"
echo "$passed ok, $failures failed, $skipped skipped"
[ $failures = 0 ]
