#!/usr/bin/env bash
# Runs every Fuzz target in the module for $FUZZTIME each (default 3s).
# `go test -fuzz` takes one target and one package per run, so list them first.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-3s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  grep -lq '^func Fuzz' "$dir"/*_test.go 2>/dev/null || continue
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz $pkg $target ($FUZZTIME)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/vigil-fuzz.log 2>&1 || {
      cat /tmp/vigil-fuzz.log; echo "fuzz target $target in $pkg failed"; exit 1; }
  done
done
