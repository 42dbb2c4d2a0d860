#!/usr/bin/env bash
# Runs every Fuzz target in the module for $FUZZTIME each (default 3s; an execution count such as
# 20000x works too). `go test -fuzz` takes one target and one package per run, so list them first.
#
# Go 1.26's fuzz coordinator can report "context deadline exceeded" when a duration -fuzztime ends
# while a worker is mid-call (golang/go#75804, fixed in Go 1.27). That run found nothing: a real
# finding always writes "Failing input written to testdata/fuzz/…". Such a run is retried once;
# any other failure, or a second boundary failure, fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-3s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

boundary_flake() {
  grep -q 'context deadline exceeded' "$log" &&
    ! grep -qE 'Failing input written|panic:|^[[:space:]]+[^[:space:]]+_test\.go:[0-9]+:' "$log"
}

for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  grep -lq '^func Fuzz' "$dir"/*_test.go 2>/dev/null || continue
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz $pkg $target ($FUZZTIME)"
    for attempt in 1 2; do
      if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
        break
      fi
      if [ "$attempt" = 1 ] && boundary_flake; then
        echo "  $target stopped with the fuzztime-boundary error and no failing input; running it again"
        continue
      fi
      cat "$log"; echo "fuzz target $target in $pkg failed"; exit 1
    done
  done
done
