#!/bin/sh
# build-image.sh [TAG] — build the Vigil node image (default tag vigil:dev) without pulling
# anything: compile a static binary (CGO_ENABLED=0), then `docker build` deploy/Dockerfile
# (FROM scratch) with the classic builder; if that fails (a builder that insists on pulling, no
# builder at all), fall back to `docker import` of a folder holding /vigil and set the same
# entrypoint, command, working directory and ports as the Dockerfile.
#
# Environment: GO (default go), VIGIL_BIN (use this prebuilt static binary instead of compiling).
set -eu
tag=${1:-vigil:dev}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
ctx=$(mktemp -d "${TMPDIR:-/tmp}/vigil-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

if [ -n "${VIGIL_BIN:-}" ]; then
	cp "$VIGIL_BIN" "$ctx/vigil"
else
	(cd "$root" && CGO_ENABLED=0 GOOS=linux ${GO:-go} build -trimpath -o "$ctx/vigil" ./cmd/vigil)
fi
chmod 0755 "$ctx/vigil"

if DOCKER_BUILDKIT=0 docker build --pull=false -q -f "$here/Dockerfile" -t "$tag" "$ctx" >"$ctx/build.log" 2>&1; then
	echo "build-image: built $tag with docker build" >&2
else
	echo "build-image: docker build failed, falling back to docker import:" >&2
	sed 's/^/  /' "$ctx/build.log" >&2
	mkdir "$ctx/root" "$ctx/root/data"
	mv "$ctx/vigil" "$ctx/root/vigil"
	tar -C "$ctx/root" -c . | docker import \
		-c 'ENTRYPOINT ["/vigil"]' -c 'CMD ["node", "--config", "/data/node.yaml"]' \
		-c 'WORKDIR /data' -c 'VOLUME ["/data"]' \
		-c 'EXPOSE 7400/tcp 7400/udp 7401/tcp 7402/tcp' - "$tag" >/dev/null
	echo "build-image: imported $tag with docker import" >&2
fi
docker image inspect --format '{{.Id}}' "$tag"
