# Vigil — code integrity and runtime attestation for Linux fleets.
GO       ?= go
BIN      := bin/vigil
PKGS     := ./...
DEBS     := binutils-mingw-w64-x86-64 osslsigncode sbsigntool kmod openssl xz-utils zstd tpm2-tools swtpm swtpm-tools efitools qemu-system-x86 ovmf mtools dosfstools gdisk busybox-static cpio socat nginx curl pesign
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: all build demo vm-demo test test-short lint deps artifacts fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/vigil

## demo: sign, verify and tamper with sample files; then `vigil up`: a local
## attestation service and this host's agent (on swtpm when installed), 3 rounds.
demo: build
	./scripts/demo.sh $(BIN)
	./scripts/up-demo.sh $(BIN)

## vm-demo: boot Debian's signed chain under OVMF Secure Boot with a swtpm TPM
## in qemu, attest the guest to a service on the host, print its level and failures.
vm-demo: deps artifacts
	./scripts/vm-demo.sh

## deps: install the Debian packages the tests need (apt-get, when root).
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	fi
	@# The headers of the kernel the artifacts hold (internal/testvm builds
	@# modules against them): linux-headers-<release> with its -common and
	@# linux-kbuild, the release from the artifacts' STAMP, else the kernel
	@# scripts/fetch-artifacts.sh will download.
	@kpkg=$$(cat "$${VIGIL_ARTIFACTS:-.cache/artifacts}/STAMP" 2>/dev/null); \
	resolve() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$$/\1/p' | head -n1; }; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	[ -n "$$kpkg" ] || kpkg=$$(resolve); \
	[ -n "$$kpkg" ] || { $$sudo apt-get update -qq && kpkg=$$(resolve); }; \
	hdr=$$(echo "$$kpkg" | sed -n 's/^linux-image-/linux-headers-/p'); \
	if [ -z "$$hdr" ]; then echo "deps: cannot resolve the kernel's headers package" >&2; exit 2; fi; \
	if ! dpkg -s "$$hdr" >/dev/null 2>&1; then \
		echo "installing: $$hdr"; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$$hdr"; \
	fi

# internal/testvm builds modules and a static helper for its guests.
DEBS += make gcc libc6-dev

artifacts:
	./scripts/fetch-artifacts.sh

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

## lint: gofmt, go vet and staticcheck.
lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

## test: install what is missing, lint, and run every test.
test: deps artifacts lint
	$(GO) test -timeout 20m $(PKGS)

test-short:
	$(GO) test -short $(PKGS)

## fuzz: run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

## bench: run the peer comparisons and rewrite docs/BENCHMARKS.md.
bench: build artifacts
	./bench/run.sh

clean:
	rm -rf bin
