#!/usr/bin/env bash
# make demo: the mirror lab with a production app, a shadow app and shadowtap
# on XDP between them. Needs root. Cleans up on exit and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (sudo make demo)" >&2
	exit 1
fi
exec go run ./testenv/cmd/demo --bin bin/shadowtap "$@"
