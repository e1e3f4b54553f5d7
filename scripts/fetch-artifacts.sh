#!/bin/sh
# Downloads real signed artifacts from Debian's archive for the tests and
# benchmarks, and unpacks them. Nothing here is committed.
#
#   scripts/fetch-artifacts.sh [DIR]     (default: $VIGIL_ARTIFACTS or .cache/artifacts)
#
# Layout of DIR after a run:
#   deb/*.deb                  the downloaded packages
#   x/<package>/...            each package unpacked with dpkg-deb -x
#   efi/*.efi.signed           signed EFI binaries (shim, grub, mm, fb, fwupd)
#   kernel/vmlinuz             a signed Debian kernel image
#   kernel/modules/            the ~4,000 signed .ko files of that kernel
#   STAMP                      written last; its presence means DIR is complete
set -eu
DIR=${1:-${VIGIL_ARTIFACTS:-$(cd "$(dirname "$0")/.." && pwd)/.cache/artifacts}}
if [ -f "$DIR/STAMP" ]; then
	echo "artifacts: up to date in $DIR"
	exit 0
fi
mkdir -p "$DIR/deb" "$DIR/x" "$DIR/efi" "$DIR/kernel"
cd "$DIR/deb"
resolve() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1; }
KPKG=$(resolve)
if [ -z "$KPKG" ] && [ "$(id -u)" = 0 ]; then
	apt-get update -qq && KPKG=$(resolve)
fi
if [ -z "$KPKG" ]; then
	echo "artifacts: cannot resolve the linux-image package (apt-get update needed?)" >&2
	exit 2
fi
echo "artifacts: downloading $KPKG shim-signed shim-helpers-amd64-signed grub-efi-amd64-signed fwupd-amd64-signed"
apt-get download "$KPKG" shim-signed shim-helpers-amd64-signed grub-efi-amd64-signed fwupd-amd64-signed 2>&1 | grep -v 'unsandboxed' || true
for d in ./*.deb; do
	n=$(basename "$d" .deb)
	[ -d "$DIR/x/$n" ] || dpkg-deb -x "$d" "$DIR/x/$n"
done
find "$DIR/x" -name '*.efi.signed' -exec cp {} "$DIR/efi/" \;
cp "$DIR"/x/linux-image-*/boot/vmlinuz-* "$DIR/kernel/vmlinuz"
rm -rf "$DIR/kernel/modules"
ln -s "$(ls -d "$DIR"/x/linux-image-*/lib/modules/*)" "$DIR/kernel/modules"
echo "$KPKG" > "$DIR/STAMP"
echo "artifacts: ready in $DIR ($(find -L "$DIR/kernel/modules" -name '*.ko*' | wc -l) modules, $(ls "$DIR/efi" | wc -l) EFI binaries)"
