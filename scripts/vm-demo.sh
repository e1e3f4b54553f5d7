#!/usr/bin/env bash
# make vm-demo: boot Debian's signed shim -> grub -> kernel under OVMF Secure
# Boot with a swtpm TPM in qemu (TCG), let the stock agent in the guest enroll
# with and attest to a service on the host (internal/testvm, TestRealAttest),
# and print the guest's level and failures. Stops by itself: the boot has its
# own timeout and the test run is bounded by -timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -t vigil-vm-demo.XXXXXX)
trap 'rm -f "$log"' EXIT
echo "booting the guest (about a minute under TCG; the first run also builds a static vigil)..."
rc=0
# CI=true: a missing part (qemu, OVMF, the artifacts) fails instead of skipping.
CI=true go test -count=1 -timeout 10m -run '^TestRealAttest$' -v ./internal/testvm/ >"$log" 2>&1 || rc=$?
lines=$(sed -n -e 's/^ *attest_test.go:[0-9]*: //p' "$log")
sed -n -e 's/^boot: \(.*\)/guest boot: \1/p' \
	-e 's/^agent \(.*\): enrollment \(.*\), level \(.*\), status \(.*\)/agent \1\n  enrollment: \2\n  level:      \3 (\4)/p' <<<"$lines"
sed -n -e 's/^failure: level \([0-9]*\) \([^ ]*\) \([^ ]*\) (\([a-z]*\)): \(.*\)/  failure:    \2 (caps below level \1; \3, \4): \5/p' <<<"$lines"
if [ "$rc" -ne 0 ]; then
	echo "vm-demo: the real-guest test failed (exit $rc):" >&2
	tail -n 30 "$log" >&2
	exit "$rc"
fi
echo "session report verified against the service CA; see docs/real-hosts.md"
