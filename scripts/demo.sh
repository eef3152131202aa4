#!/usr/bin/env bash
# The main job: installs what is needed, builds nosplit, then runs the lab
# demo: three hosts (network namespaces with three planes, each with its own
# FUSE view of the shared storage and its own leased), two HA QEMU guests
# and four process VMs; the host running guest g1 is powered off and g1
# comes back on another host. It prints a timeline and the split-brain
# oracle's verdict, then removes the lab. Under two minutes once built.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
cargo build --release --locked -p nosplit
exec target/release/nosplit lab demo "$@"
