# Certificates for the local cluster, from one CA made with openssl. Sourced by `up`.
# Each certificate is made once; deleting the pki folder makes new ones on the next `up`.

pki_dir() { echo "$CLUSTER_STATE/pki"; }

_ext_file() {  # $1 = extended key usage, $2 = subjectAltName or empty
  local f; f="$(mktemp)"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$1"
    [ -n "$2" ] && echo "subjectAltName=$2"
  } > "$f"
  echo "$f"
}

# make_ca NAME CN: a self-signed CA (once)
make_ca() {
  local dir; dir="$(pki_dir)"
  [ -s "$dir/$1.crt" ] && return 0
  openssl genrsa -out "$dir/$1.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$dir/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/$1.crt" 2>/dev/null
}

# issue NAME SUBJECT EKU [SAN] [CA]
issue_cert() {
  local dir name="$1" subject="$2" eku="$3" san="${4:-}" ca="${5:-ca}" ext
  dir="$(pki_dir)"
  [ -s "$dir/$name.crt" ] && return 0
  openssl genrsa -out "$dir/$name.key" 2048 2>/dev/null
  openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr" 2>/dev/null
  ext="$(_ext_file "$eku" "$san")"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$ext" "$dir/$name.csr"
}

make_pki() {
  local dir node="$1" node_ip="$2"
  dir="$(pki_dir)"; mkdir -p "$dir"; chmod 700 "$dir"
  make_ca ca shipyard-local-ca
  # The aggregation layer's own CA: the API server proves itself to aggregated API servers
  # (metrics-server) with front-proxy-client, and they trust only that CA for it.
  make_ca front-proxy-ca shipyard-front-proxy-ca
  issue_cert front-proxy-client "/CN=front-proxy-client" clientAuth "" front-proxy-ca
  # metrics-server's serving certificate, for the address the API server reaches it on.
  issue_cert metrics-server "/CN=metrics-server.kube-system.svc" serverAuth \
    "DNS:metrics-server,DNS:metrics-server.kube-system,DNS:metrics-server.kube-system.svc,IP:$POD_GATEWAY"
  issue_cert apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1,IP:$node_ip"
  issue_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  issue_cert admin "/O=system:masters/CN=shipyard-admin" clientAuth
  issue_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  issue_cert scheduler "/CN=system:kube-scheduler" clientAuth
  issue_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  issue_cert kubelet-client "/O=system:nodes/CN=system:node:$node" clientAuth
  issue_cert kubelet-serving "/O=system:nodes/CN=system:node:$node" serverAuth "DNS:$node,DNS:localhost,IP:127.0.0.1"
  if [ ! -s "$dir/sa.key" ]; then
    openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  fi
  chmod 600 "$dir"/*.key
}

# kubeconfig NAME CERT_NAME USER
make_kubeconfig() {
  local name="$1" cert="$2" user="$3" dir out
  dir="$(pki_dir)"; out="$CLUSTER_STATE/$name.kubeconfig"
  [ -s "$out" ] && return 0
  cat > "$out" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: shipyard-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $dir/ca.crt
users:
- name: $user
  user:
    client-certificate: $dir/$cert.crt
    client-key: $dir/$cert.key
contexts:
- name: shipyard-local
  context: {cluster: shipyard-local, user: $user}
current-context: shipyard-local
KUBECONFIG
  chmod 600 "$out"
}
