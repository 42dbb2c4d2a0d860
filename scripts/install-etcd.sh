#!/usr/bin/env bash
# Installs etcd (Debian's etcd-server package) for the baseline benchmark in consensus/benchmark/.
# Idempotent: does nothing when an `etcd` binary is already on PATH.
# Note: on a host with systemd, Debian's package also enables an etcd service on 127.0.0.1:2379; the
# benchmark never uses that instance (it starts its own members on free loopback ports).
set -euo pipefail

if command -v etcd >/dev/null 2>&1; then
  echo "install-etcd: etcd already installed: $(command -v etcd) ($(etcd --version 2>/dev/null | head -n1))"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-etcd: etcd is not installed and this script needs root (or sudo) to run apt-get." >&2
    echo "install-etcd: install Debian's etcd-server package by hand: apt-get install -y etcd-server" >&2
    exit 1
  fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-etcd: etcd is not installed and apt-get is not available on this system." >&2
  echo "install-etcd: install etcd (v3.4 or later) so that 'etcd' is on PATH, then rerun." >&2
  exit 1
fi

echo "install-etcd: installing etcd-server with apt-get"
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update; then
  echo "install-etcd: apt-get update failed; cannot install etcd-server." >&2
  exit 1
fi
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server; then
  echo "install-etcd: apt-get install -y etcd-server failed." >&2
  exit 1
fi

if ! command -v etcd >/dev/null 2>&1; then
  echo "install-etcd: etcd-server installed but no 'etcd' binary on PATH (expected /usr/bin/etcd)." >&2
  exit 1
fi
echo "install-etcd: installed $(command -v etcd) ($(etcd --version 2>/dev/null | head -n1))"
