#!/bin/sh
# Runs every go test -fuzz target in the module for a given time each.
#   scripts/fuzz.sh [FUZZTIME] [PACKAGE_PATTERN]     e.g. scripts/fuzz.sh 5m ./cms/...
# New crashers are written by Go under PKG/testdata/fuzz/FuzzX/ — commit them
# as regression seeds once fixed. Exits non-zero when any target fails.
set -eu
T=${1:-30s}
PKGS=${2:-./...}
cd "$(dirname "$0")/.."
fail=0
for pkg in $(go list "$PKGS"); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u)
	for t in $targets; do
		echo "== $pkg $t ($T)"
		log=$(mktemp)
		if go test "$pkg" -run '^$' -fuzz "^$t\$" -fuzztime "$T" -fuzzminimizetime 5s >"$log" 2>&1; then
			tail -n 2 "$log"
		else
			cat "$log"
			fail=1
		fi
		rm -f "$log"
	done
done
exit $fail
