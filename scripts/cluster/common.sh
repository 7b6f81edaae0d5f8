# Shared settings for scripts/cluster/*: paths, versions, logging. Sourced, never executed.
# Why here: every cluster script must agree on where the cache and the state live.
set -euo pipefail
CLUSTER_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="$(cd "$CLUSTER_SCRIPTS/../.." && pwd)"
# shellcheck source=versions.env
source "$CLUSTER_SCRIPTS/versions.env"

# Build cache outside the repo, so fresh clones (CI's included) on this machine reuse it.
SHIPYARD_CACHE="${SHIPYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipyard}"
# The recipe is part of the key: editing the build script or the versions rebuilds.
RECIPE_HASH="$(cat "$CLUSTER_SCRIPTS/versions.env" "$CLUSTER_SCRIPTS/build" | sha256sum | cut -c1-12)"
CLUSTER_BIN="$SHIPYARD_CACHE/cluster/bin-$KUBERNETES_VERSION-etcd$ETCD_VERSION-$RECIPE_HASH"

# Runtime state of the running cluster lives under the project's state folder.
SHIPYARD_STATE="${SHIPYARD_STATE:-$PROJECT_ROOT/.shipyard}"
CLUSTER_STATE="$SHIPYARD_STATE/cluster"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
