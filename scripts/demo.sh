#!/bin/sh
# make demo: sign sample PE, module and plain files with a freshly made test
# CA, verify them, tamper with them, and verify again. Everything happens in a
# temporary directory; nothing outside it changes.
set -eu
VIGIL=$(cd "$(dirname "${1:-bin/vigil}")" && pwd)/$(basename "${1:-bin/vigil}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/vigil-demo.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# show runs vigil and prints its exit code without stopping the demo.
show() { set +e; "$VIGIL" "$@"; rc=$?; set -e; echo "(exit $rc)"; }

step "1. A fresh test CA: root -> code-signing leaf (openssl)"
openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key -out root.pem -days 30 \
	-subj "/CN=Vigil Demo Root CA" -addext basicConstraints=critical,CA:true \
	-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout signer.key -out signer.csr -subj "/CN=Vigil Demo Publisher" 2>/dev/null
printf 'basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n' > leaf.ext
openssl x509 -req -in signer.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 \
	-extfile leaf.ext -out signer.pem 2>/dev/null
openssl x509 -in signer.pem -noout -subject -issuer -serial

step "2. Sample files: a Windows PE, an ELF module stand-in, a firmware blob"
(cd "$ROOT" && GOOS=windows GOARCH=amd64 go build -trimpath -ldflags=-s -o "$W/sample.exe" ./scripts/demo/hello)
(cd "$ROOT" && go build -trimpath -ldflags=-s -o "$W/sample.ko" ./scripts/demo/hello)
head -c 65536 /dev/urandom > firmware.bin
ls -l sample.exe sample.ko firmware.bin

step "3. Sign: Authenticode (pe), module signature (kmod), detached CMS (cms)"
"$VIGIL" sign --key signer.key --cert signer.pem --format pe   --in sample.exe   --out signed.exe
"$VIGIL" sign --key signer.key --cert signer.pem --format kmod --in sample.ko    --out signed.ko
"$VIGIL" sign --key signer.key --cert signer.pem --format cms  --in firmware.bin --out firmware.bin.p7s

step "4. Verify against the test CA: all allowed"
echo "(module signatures carry no certificates: like the kernel, vigil finds the signer"
echo " in a keyring, here --keyring signer.pem, and chains it to the anchor root.pem)"
show verify --trust root.pem --keyring signer.pem signed.exe signed.ko firmware.bin

step "5. Unsigned originals: denied (unsigned)"
show verify --trust root.pem sample.exe sample.ko

step "6. Tamper: flip one byte in the middle of each file, verify again"
for f in signed.exe signed.ko firmware.bin; do
	size=$(wc -c < "$f"); off=$((size / 2))
	b=$(dd if="$f" bs=1 skip=$off count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
	printf "$(printf '\\%03o' $(( (b ^ 1) & 255 )))" | dd of="$f" bs=1 seek=$off conv=notrunc 2>/dev/null
done
show verify --trust root.pem --keyring signer.pem signed.exe signed.ko firmware.bin

step "7. Revoke the publisher in a policy, then verify a fresh signature: denied (revoked)"
"$VIGIL" sign --key signer.key --cert signer.pem --format pe --in sample.exe --out resigned.exe >/dev/null
serial=$(openssl x509 -in signer.pem -noout -serial | cut -d= -f2)
cat > policy.yaml <<POLICY
trust: [root.pem]
revocations:
  - issuer: "CN=Vigil Demo Root CA"
    serial: "$serial"
    reason: keyCompromise
POLICY
cat policy.yaml
show verify --policy policy.yaml resigned.exe

step "8. The same verdicts as JSON Lines, for machines"
show verify --trust root.pem --output json resigned.exe signed.exe

step "9. Measure this host: the runtime report (absent parts are 'unavailable')"
show agent measure

step "10. A host that hides a module: a fixture tree where a signed module is"
echo "    missing from /proc/modules but still in sysfs and kallsyms"
LOGARG=""
[ -f "$ROOT/../shared/data/eventlogs/sb_cert_eventlog" ] && LOGARG="-eventlog $ROOT/../shared/data/eventlogs/sb_cert_eventlog"
(cd "$ROOT" && go run ./internal/testhost/mkhost -ima 1000 $LOGARG "$W/host") >/dev/null
sed -i '/^mod007 /d' host/proc/modules
show agent measure --root host --trust host.pki/root.pem --keyring host.pki/keyring.pem

step "11. Evidence: the report signed for a verifier's nonce (software key here;"
echo "    --tpm /dev/tpmrm0 adds the TPM quote), verified offline, then replayed"
nonce=$(openssl rand -hex 16)
"$VIGIL" agent evidence --soft agent.key --nonce "$nonce" --root host --no-verify > evidence.json
echo "evidence.json: $(wc -c < evidence.json) bytes"
show evidence verify --nonce "$nonce" evidence.json
show evidence verify --nonce "$(openssl rand -hex 16)" evidence.json

step "Done. The peer tools agree: osslsigncode/sbverify accept signed PE files,"
echo "modinfo and openssl cms accept signed modules (see 'make test')."
