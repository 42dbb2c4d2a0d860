#!/bin/sh
# admit.sh DIR — admit node-2 and node-3 (IDs and addresses from DIR/cluster.env, written by
# setup.sh) through node-1's admin Unix socket, with the operator key vigil init left in node-1's
# data directory. Run it after node-1 is up and before node-2 and node-3 start.
#
# EXEC is the command that runs a program inside node-1's container; the default suits
# compose.yaml. For a plain container: EXEC="docker exec vigil-node-1" ./admit.sh DIR
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
. "$1/cluster.env"
EXEC=${EXEC:-docker-compose -f $here/compose.yaml exec -T node-1}
admin="--socket /data/admin.sock --key /data/keys/operator-1.key"

# node-1 may still be starting or applying its genesis: wait up to 30 s for its cluster id.
i=0
until $EXEC /vigil status $admin 2>/dev/null | grep -Eq '^cluster: +[0-9a-f]{32}$'; do
	i=$((i + 1))
	[ $i -lt 60 ] || { echo "admit: node-1 does not answer on its admin socket" >&2; exit 1; }
	sleep 0.5
done
$EXEC /vigil members admit node-2 --node-id "$NODE2_ID" --site site-a --addr "/ip4/$NODE2_IP/tcp/7400" $admin
$EXEC /vigil members admit node-3 --node-id "$NODE3_ID" --site site-b --addr "/ip4/$NODE3_IP/tcp/7400" $admin
