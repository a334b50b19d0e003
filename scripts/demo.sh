#!/usr/bin/env bash
# make demo: the mirror lab with a production app, a shadow app that differs
# on purpose, a baseline, and shadowtap on XDP between them; ends with
# `shadowtap report`, `shadowtap verdict` (its failing criteria and exit
# status) and demo-report.html. Needs root. Cleans up on exit and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (sudo make demo)" >&2
	exit 1
fi
export PATH="$PATH:/usr/local/go/bin"
# The lab needs ip and tc (iproute2), ethtool and nsenter (util-linux).
for c in ip tc ethtool nsenter; do
	if ! command -v "$c" >/dev/null; then
		echo "demo: $c is missing; installing iproute2, ethtool and util-linux" >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 ethtool util-linux >/dev/null
		break
	fi
done
exec go run ./testenv/cmd/demo --bin bin/shadowtap "$@"
