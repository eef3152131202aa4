#!/usr/bin/env bash
# The main job: installs what is needed, then runs it. Until the lab demo
# lands, the main job is the lease benchmark against sanlock.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --bench
exec bench/lease-vs-sanlock
