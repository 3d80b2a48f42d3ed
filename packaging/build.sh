#!/usr/bin/env bash
# Builds the three Debian packages of ems into target/debian/ (<name>_<version>-1_<arch>.deb, also
# with --target): ems-agent (agent + driver plugins + device maps), ems-cloud (server + dashboard),
# emsctl (CLI + completions + man pages).
#
#   packaging/build.sh                                    # for this machine
#   packaging/build.sh --target aarch64-unknown-linux-gnu # cross-build for a 64-bit Raspberry Pi
#
# Steps: (1) cargo build of the binaries and driver plugins (the agent and its plugins with the
# size-optimised `edge` profile, see Cargo.toml; the cloud and emsctl `--release`); (2) the web dashboard,
# built with npm in a private copy of dashboard/ (the working tree's node_modules and dist are
# left alone); (3) emsctl's completions and man pages; (4) cargo deb --no-build per package.
# Generated files are staged in target/packaging/, where the asset lists in the crates'
# [package.metadata.deb] sections pick them up.
#
# Environment:
#   EMS_DASHBOARD=auto   build the dashboard when npm is installed, else package dashboard/dist
#                        if it exists (default)
#   EMS_DASHBOARD=dist   package dashboard/dist as it is (no npm run; offline builds, tests)
#   EMS_DASHBOARD=none   package no dashboard (ems-cloud then answers / with a 503 page)
#   CARGO_DEB            the cargo-deb command (default: `cargo deb`; installed when missing)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

target=""
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target="$2"; shift 2 ;;
        --target=*) target="${1#--target=}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$root/packaging/build.sh" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*" >&2; }

# The target directory as cargo sees it (CARGO_TARGET_DIR, .cargo/config); staged files always go
# to the workspace's own target/packaging, which the asset lists name relative to the crates.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
stage="$root/target/packaging"
target_args=()
bin_dir="$target_dir/release"
if [ -n "$target" ]; then
    target_args=(--target "$target")
    bin_dir="$target_dir/$target/release"
fi

step "cargo build --profile edge ${target_args[*]} (agent, four driver plugins)"
cargo build --profile edge "${target_args[@]}" \
    -p ems-agent \
    -p ems-driver-sunspec -p ems-driver-sdm630 -p ems-driver-ina226 -p ems-driver-modbus-map
step "cargo build --release ${target_args[*]} (cloud, emsctl)"
cargo build --release "${target_args[@]}" -p ems-cloud -p emsctl

rm -rf "$stage/dashboard" "$stage/completions" "$stage/man"
mkdir -p "$stage/dashboard" "$stage/completions" "$stage/man"

mode=${EMS_DASHBOARD:-auto}
if [ "$mode" = auto ]; then
    if command -v npm >/dev/null; then mode=npm; else mode=dist; fi
fi
case "$mode" in
    npm)
        step "dashboard: npm ci && npm run build (in target/packaging/dashboard-src)"
        src="$stage/dashboard-src"
        rm -rf "$src"
        mkdir -p "$src"
        tar -C dashboard --exclude=./node_modules --exclude=./dist -cf - . | tar -C "$src" -xf -
        (cd "$src" && npm ci --no-audit --no-fund && npm run build)
        cp -a "$src/dist/." "$stage/dashboard/"
        ;;
    dist)
        if [ -f dashboard/dist/index.html ]; then
            step "dashboard: packaging dashboard/dist as built (EMS_DASHBOARD=$mode or no npm)"
            cp -a dashboard/dist/. "$stage/dashboard/"
        else
            step "dashboard: WARNING no npm and no dashboard/dist: ems-cloud is packaged without it"
        fi
        ;;
    none) step "dashboard: left out (EMS_DASHBOARD=none)" ;;
    *) echo "build.sh: EMS_DASHBOARD must be auto, dist or none, not $mode" >&2; exit 2 ;;
esac
if [ ! -f "$stage/dashboard/index.html" ]; then
    # The asset list needs at least one file; this one tells the administrator what is missing.
    cat > "$stage/dashboard/NOT-BUILT.txt" <<'EOF'
This ems-cloud package was built without the web dashboard, so / answers 503.
Build it from the source tree (cd dashboard && npm ci && npm run build) and copy dashboard/dist/*
here, or point dashboard_dir in /etc/ems-cloud/cloud.toml at a built copy.
EOF
fi

step "emsctl: shell completions and man pages"
emsctl="$bin_dir/emsctl"
if [ -n "$target" ]; then
    # A cross-built emsctl does not run here; the generated text is the same from a host build.
    cargo build --release -p emsctl
    emsctl="$target_dir/release/emsctl"
fi
"$emsctl" completions bash > "$stage/completions/emsctl.bash"
"$emsctl" completions zsh > "$stage/completions/_emsctl"
"$emsctl" completions fish > "$stage/completions/emsctl.fish"
"$emsctl" man --dir "$stage/man"
gzip -9nf "$stage/man/"*.1

if [ -n "${CARGO_DEB:-}" ]; then
    read -r -a cargo_deb <<< "$CARGO_DEB"
elif cargo deb --version >/dev/null 2>&1; then
    cargo_deb=(cargo deb)
else
    step "installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked
    cargo_deb=(cargo deb)
fi

for package in ems-agent ems-cloud emsctl; do
    # cargo-deb reads the assets' `target/release/` as the directory of the profile given.
    profile=release
    [ "$package" = ems-agent ] && profile=edge
    step "cargo deb -p $package --profile $profile --no-build ${target_args[*]}"
    # cargo-deb warns about every asset under ../target/ that is not a Cargo build product: the
    # staged files above are meant to be that, so those warnings are dropped.
    { "${cargo_deb[@]}" -p "$package" --profile "$profile" --no-build "${target_args[@]}" 2>&1 1>&3 \
        | { grep -v "^warning: Only source paths starting with exactly 'target/release/'" || true; } >&2; } 3>&1
done

step "packages"
# cargo-deb 3 writes every architecture to target/debian (the file names carry the arch).
ls -l "$target_dir/debian/"*.deb
