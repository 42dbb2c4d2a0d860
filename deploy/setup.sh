#!/bin/sh
# setup.sh DIR — prepare the data directories of a 3-node Vigil cluster on two sites:
#
#   DIR/node-1/   site-a, on both networks; created by `vigil init` (genesis, operator key)
#   DIR/node-2/   site-a
#   DIR/node-3/   site-b
#   DIR/cluster.env   node IDs and addresses, read by admit.sh
#
# Each directory gets keys/node.key, genesis.bin and node.yaml (mounted at /data in the
# container). node-2 and node-3 must be admitted (admit.sh) after node-1 runs and before they
# start. DIR must not exist or be empty; nothing is ever overwritten.
#
# Environment (defaults match compose.yaml): VIGIL (vigil binary, default: go run ./cmd/vigil),
# NODE1_IP_A, NODE1_IP_B, NODE2_IP, NODE3_IP, LOG_LEVEL (info).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${VIGIL:-}" ]; then
	VIGIL="$here/../bin/vigil"
	(cd "$here/.." && CGO_ENABLED=0 ${GO:-go} build -trimpath -o bin/vigil ./cmd/vigil)
fi
NODE1_IP_A=${NODE1_IP_A:-10.231.1.11}
NODE1_IP_B=${NODE1_IP_B:-10.231.2.11}
NODE2_IP=${NODE2_IP:-10.231.1.12}
NODE3_IP=${NODE3_IP:-10.231.2.13}
LOG_LEVEL=${LOG_LEVEL:-info}

if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
	echo "setup: $dir is not empty; setup never overwrites a cluster" >&2
	exit 1
fi
mkdir -p "$dir"

"$VIGIL" init --dir "$dir/node-1" --node-name node-1 --site site-a \
	--advertise "/ip4/$NODE1_IP_A/tcp/7400" >"$dir/init.out"
# The first node's ID is printed by init on the "node" line.
id1=$(awk '$1 == "node" { print $3 }' "$dir/init.out")
for n in 2 3; do
	mkdir -p "$dir/node-$n/keys"
	chmod 0700 "$dir/node-$n" "$dir/node-$n/keys"
	cp "$dir/node-1/genesis.bin" "$dir/node-$n/genesis.bin"
done
id2=$("$VIGIL" keygen --out "$dir/node-2/keys/node.key" --role node)
id3=$("$VIGIL" keygen --out "$dir/node-3/keys/node.key" --role node)

# config NAME SITE ADVERTISE JOIN: node.yaml for one container. Every listener binds all
# interfaces inside the container; compose publishes them on the host's 127.0.0.1 only.
config() {
	cat <<YAML
node:
  name: $1
  site: $2
  data_dir: /data
listen:
  libp2p:
    - /ip4/0.0.0.0/tcp/7400
    - /ip4/0.0.0.0/udp/7400/quic-v1
  admin: 0.0.0.0:7401
  admin_socket: admin.sock
  http: 0.0.0.0:7402
advertise: [$3]
join: [$4]
raft:
  voter: true
log:
  level: $LOG_LEVEL
  format: text
YAML
}
config node-1 site-a "/ip4/$NODE1_IP_A/tcp/7400, /ip4/$NODE1_IP_B/tcp/7400" "" >"$dir/node-1/node.yaml"
config node-2 site-a "/ip4/$NODE2_IP/tcp/7400" "/ip4/$NODE1_IP_A/tcp/7400/p2p/$id1" >"$dir/node-2/node.yaml"
config node-3 site-b "/ip4/$NODE3_IP/tcp/7400" "/ip4/$NODE1_IP_B/tcp/7400/p2p/$id1" >"$dir/node-3/node.yaml"
for n in 1 2 3; do
	"$VIGIL" config lint "$dir/node-$n/node.yaml" >/dev/null
done

cat >"$dir/cluster.env" <<ENV
NODE1_ID=$id1
NODE2_ID=$id2
NODE3_ID=$id3
NODE1_IP_A=$NODE1_IP_A
NODE1_IP_B=$NODE1_IP_B
NODE2_IP=$NODE2_IP
NODE3_IP=$NODE3_IP
ENV
cat "$dir/cluster.env"
