#!/bin/sh
# make demo, part 2: `vigil up` — a local attestation service and an agent for
# this host. With swtpm installed, the agent's enclave is a fresh software TPM
# (EK, AK, quotes: level 2 and above); without it, a software key (level 1).
# Everything lives in a temporary directory. DEMO_ROUNDS bounds the run
# (default 3 attestations); DEMO_ROUNDS=0 attests until Ctrl-C.
set -eu
VIGIL=$(cd "$(dirname "${1:-bin/vigil}")" && pwd)/$(basename "${1:-bin/vigil}")
ROUNDS=${DEMO_ROUNDS:-3}
W=$(mktemp -d "${TMPDIR:-/tmp}/vigil-up.XXXXXX")
SWTPM_PID=
cleanup() { [ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT INT TERM

printf '\n\033[1m== vigil up: a local attestation service and this host'"'"'s agent\033[0m\n'
set --
if command -v swtpm >/dev/null 2>&1 && command -v swtpm_setup >/dev/null 2>&1; then
	mkdir -p "$W/tpm"
	swtpm_setup --tpm2 --tpmstate "$W/tpm" --createek --pcr-banks sha256 --overwrite >"$W/swtpm_setup.log" 2>&1 ||
		{ cat "$W/swtpm_setup.log"; exit 2; }
	swtpm socket --tpm2 --tpmstate dir="$W/tpm" --flags not-need-init,startup-clear \
		--server type=unixio,path="$W/tpm.sock" --ctrl type=unixio,path="$W/tpm.sock.ctrl" >"$W/swtpm.log" 2>&1 &
	SWTPM_PID=$!
	i=0; while [ ! -S "$W/tpm.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
	echo "enclave: swtpm (a software TPM 2.0) on $W/tpm.sock"
	set -- --tpm "unix://$W/tpm.sock"
else
	echo "enclave: a software key (install swtpm for a TPM: make deps)"
fi
"$VIGIL" up --data "$W/data" --listen 127.0.0.1:0 --interval 2s --rounds "$ROUNDS" "$@"
