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

# Runtime state of the running cluster lives under the project's state folder. Its own variable:
# test sessions move SHIPYARD_STATE to a scratch folder, but there is one cluster per checkout.
CLUSTER_STATE="${SHIPYARD_CLUSTER_STATE:-$PROJECT_ROOT/.shipyard/cluster}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

APISERVER_PORT="${SHIPYARD_APISERVER_PORT:-6443}"
ETCD_PORT="${SHIPYARD_ETCD_PORT:-2379}"
KUBECONFIG_ADMIN="$CLUSTER_STATE/admin.kubeconfig"
CONTAINERD_SOCK="$CLUSTER_STATE/containerd/containerd.sock"
SANDBOX_IMAGE="shipyard.local/pause:3.10"
BRIDGE="shipyard0"
POD_SUBNET="10.244.0.0/24"
POD_GATEWAY="10.244.0.1"        # the bridge's address (the CNI bridge plugin's gateway)
SERVICE_RANGE="10.96.0.0/16"
DNS_IP="10.96.0.10"             # the kube-dns Service: pods' nameserver
# Static local volumes the cluster offers (one per bound claim: the batch volume of each namespace).
VOLUME_COUNT=8
# Start order; `down` walks it backwards.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

node_name() { hostname | tr '[:upper:]' '[:lower:]'; }

# The node's address on the default route's interface: the InternalIP kubelet reports.
# Read from the interface table, no packet sent.
node_ip() {
  local dev
  dev="$(ip -4 route show default | awk '{for (i=1;i<NF;i++) if ($i=="dev") {print $(i+1); exit}}')"
  ip -4 -o addr show dev "$dev" | awk '{split($4, a, "/"); print a[1]; exit}'
}

pid_of() { cat "$CLUSTER_STATE/pids/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# Installs Debian packages whose command is missing: "command:package" pairs.
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}; install them as root (apt-get install ${missing[*]})"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

kubectl_admin() { "$CLUSTER_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# --- the host firewall rules the cluster needs, in a chain of its own
# With br_netfilter loaded (bridge-nf-call-iptables=1), frames between two pods on the bridge
# traverse iptables' FORWARD chain. dockerd sets FORWARD's policy to DROP when it starts (before or
# after the cluster), so pod-to-pod and pod-to-Service traffic dies unless something accepts it.
# SHIPYARD-FORWARD accepts exactly the cluster's own traffic (bridge to bridge, pod CIDR to pod
# CIDR) and nothing that leaves the machine; one jump to it sits at the top of FORWARD. dockerd only
# inserts its own jumps and never flushes FORWARD, so the jump survives dockerd starting later.
# NetworkPolicy: the first packet of every new pod-to-pod connection goes first to nfqueue
# NETWORK_POLICY_QUEUE, where kube-network-policies (an add-on, up step 8) accepts or drops it; with
# no daemon bound to the queue the packet is dropped (fail-closed). Established traffic is not queued.
FIREWALL_CHAIN="SHIPYARD-FORWARD"
NETWORK_POLICY_QUEUE=98

firewall_rules() {  # the chain's rules, one per line, as iptables -A arguments
  printf '%s\n' \
    "-s $POD_SUBNET -d $POD_SUBNET -m conntrack --ctstate NEW -m comment --comment shipyard-network-policy -j NFQUEUE --queue-num $NETWORK_POLICY_QUEUE" \
    "-i $BRIDGE -o $BRIDGE -m comment --comment shipyard-pod-to-pod -j ACCEPT" \
    "-s $POD_SUBNET -d $POD_SUBNET -m comment --comment shipyard-pod-cidr -j ACCEPT"
}

firewall_open() {  # idempotent: (re)writes the chain and makes sure FORWARD jumps to it first
  iptables -w -N "$FIREWALL_CHAIN" 2>/dev/null || true
  iptables -w -F "$FIREWALL_CHAIN"
  local rule
  while read -r rule; do
    # shellcheck disable=SC2086
    iptables -w -A "$FIREWALL_CHAIN" $rule
  done < <(firewall_rules)
  iptables -w -C FORWARD -j "$FIREWALL_CHAIN" 2>/dev/null || iptables -w -I FORWARD 1 -j "$FIREWALL_CHAIN"
}

firewall_close() {  # removes every jump to the chain, then the chain
  command -v iptables >/dev/null 2>&1 || return 0
  while iptables -w -D FORWARD -j "$FIREWALL_CHAIN" 2>/dev/null; do :; done
  iptables -w -F "$FIREWALL_CHAIN" 2>/dev/null || true
  iptables -w -X "$FIREWALL_CHAIN" 2>/dev/null || true
}

firewall_ok() {  # the chain holds exactly our rules and FORWARD jumps to it
  iptables -w -C FORWARD -j "$FIREWALL_CHAIN" 2>/dev/null || return 1
  local rule
  while read -r rule; do
    # shellcheck disable=SC2086
    iptables -w -C "$FIREWALL_CHAIN" $rule 2>/dev/null || return 1
  done < <(firewall_rules)
}

network_policy_enforced() {  # a process is bound to the queue the firewall sends new pod connections to
  awk -v q="$NETWORK_POLICY_QUEUE" '$1 == q { found = 1 } END { exit !found }' /proc/net/netfilter/nfnetlink_queue 2>/dev/null
}
