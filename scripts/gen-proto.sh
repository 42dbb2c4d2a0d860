#!/usr/bin/env bash
# gen-proto.sh regenerates the admin API's Go code from node/admin/proto into node/admin/adminv1.
# The generated code is committed, so `make test` needs no protoc; run this (or `make generate`)
# after editing a .proto file. Needs protoc (Debian: apt-get install protobuf-compiler); the two Go
# plugins are installed at pinned versions into bin/tools.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION=v1.21.1

command -v protoc >/dev/null || { echo "gen-proto: protoc not found (apt-get install -y protobuf-compiler)" >&2; exit 1; }

TOOLS="$PWD/bin/tools"
mkdir -p "$TOOLS"
GOBIN="$TOOLS" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$TOOLS" go install "connectrpc.com/connect/cmd/protoc-gen-connect-go@${PROTOC_GEN_CONNECT_GO_VERSION}"

PROTO_ROOT=node/admin/proto
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
PATH="$TOOLS:$PATH" protoc -I "$PROTO_ROOT" \
	--go_out="$OUT" --go_opt=module=github.com/vigil-mesh/vigil \
	--connect-go_out="$OUT" --connect-go_opt=module=github.com/vigil-mesh/vigil \
	$(find "$PROTO_ROOT" -name '*.proto' | sort)

# Replace every generated file so a deleted .proto leaves nothing stale; hand-written files
# (doc.go) stay.
find node/admin/adminv1 \( -name '*.pb.go' -o -name '*.connect.go' \) -delete 2>/dev/null || true
mkdir -p node/admin/adminv1
cp -R "$OUT/node/admin/adminv1/." node/admin/adminv1/
echo "gen-proto: wrote node/admin/adminv1"
