#!/usr/bin/env bash
# Installs what nosplit's build, tests and benchmarks need on Debian 12.
# Idempotent; safe to run twice.
#
#   scripts/install.sh            # toolchain pieces and lab packages for build and tests
#   scripts/install.sh --bench    # also sanlock + python3-sanlock (side-by-side benchmarks)
set -euo pipefail

bench=0
for a in "$@"; do
    case "$a" in
        --bench) bench=1 ;;
        *) echo "install.sh: unknown argument $a (use --bench)" >&2; exit 2 ;;
    esac
done

log() { printf '[install] %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    local try
    for try in 1 2 3 4 5 6; do
        if DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
            return 0
        fi
        log "apt-get install failed (try $try); updating lists and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get update -y >/dev/null 2>&1 || true
        sleep $((try * 5))
    done
    log "could not install ${missing[*]}"
    return 1
}

command -v cargo >/dev/null || { log "cargo is missing: install Rust (rustup) first"; exit 1; }
for c in clippy rustfmt; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
        log "rustup component add $c"
        rustup component add "$c"
    fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo install cargo-nextest"
    cargo install cargo-nextest --locked
fi
# The lab (tests and demo): QEMU guests under TCG built from Debian's cloud
# kernel and busybox, FUSE for per-host storage faults, namespaces and
# nftables for the network planes.
if ! dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q "install ok installed"; then
    # A newer qemu-utils (backports) blocks Debian 12's qemu-system-x86:
    # install both from bookworm in one command (LAB.md).
    log "apt-get install qemu-system-x86 qemu-utils/bookworm"
    for try in 1 2 3 4 5 6; do
        if DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            --allow-downgrades qemu-system-x86 qemu-utils/bookworm; then
            break
        fi
        [ "$try" = 6 ] && { log "could not install qemu-system-x86"; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get update -y >/dev/null 2>&1 || true
        sleep $((try * 5))
    done
fi
apt_install busybox-static cpio linux-image-cloud-amd64 fuse3 iproute2 nftables \
    iputils-ping socat procps
if [ "$bench" = 1 ]; then
    apt_install sanlock python3-sanlock
fi
log "done"
