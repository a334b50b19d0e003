#!/usr/bin/env bash
# make fuzz: every fuzz target in pkg/ and testenv/ for FUZZTIME each.
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when -fuzztime ends while a worker is mid-input, on a busy
# machine (go.dev/issue/75804, fixed in Go 1.27). Such a run wrote no
# failing input; it is run once more. Anything else that fails — a written
# reproducer, a panic, a failed check — fails at once.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
grep -rHo '^func Fuzz[A-Za-z0-9_]*' --include='*_test.go' pkg testenv | while IFS=: read -r file fn; do
	fn=${fn#func }
	pkg=./$(dirname "$file")
	for attempt in 1 2; do
		echo "fuzz $pkg $fn ($FUZZTIME)"
		out=$("$GO" test -run '^$' -fuzz "^$fn\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1)
		rc=$?
		printf '%s\n' "$out"
		[ $rc -eq 0 ] && break
		if [ $attempt -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" &&
			! grep -q -e 'Failing input written' -e 'panic:' -e '_test.go:[0-9]*:' <<<"$out"; then
			echo "fuzz $fn: the fuzz coordinator's deadline race (go.dev/issue/75804), no failing input: once more"
			continue
		fi
		exit 1
	done
done
