# shadowtap — build, generate, test, bench, demo, install, lab.
GO      ?= go
PREFIX  ?= /usr/local
BIN     := bin/shadowtap
FUZZTIME ?= 10s
LAB     ?= shadowtap-lab
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# sudo's secure_path usually lacks Go's directory.
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build generate check-generated test deps fuzz flood soak bench bench-bpf demo install uninstall lab-up lab-down clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X github.com/shadowtap/shadowtap/pkg/buildinfo.version=$(VERSION)" -o $(BIN) ./cmd/shadowtap

# Rebuild the BPF objects and their Go bindings from bpf/*.c (needs clang).
generate:
	$(GO) generate ./bpf/...

# Fails when the committed BPF objects no longer match the C source.
check-generated: generate
	git diff --exit-code -- bpf/

# The test command: installs what the tests need when it is missing
# (scripts/deps.sh), then unit tests, privileged lab tests (as root), a short fuzz run.
test: deps
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz

deps:
	./scripts/deps.sh

fuzz:
	GO="$(GO)" FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# The flood runs, not in CI (needs root, about two minutes): a million
# spoofed flows and random VXLAN payloads from the allowed source while an
# established connection is replayed, a shadow answering with 100 MiB
# heads, and 16 MiB request bodies never answered at the generator's top
# rate; each checks shadowtap's peak RSS against its budget. CI runs the
# same tests at a small scale.
flood:
	SHADOWTAP_FLOOD=full SHADOWTAP_REQUIRE_ROOT=1 $(GO) test -count=1 -v -timeout 10m \
		-run '^(TestFloodKeepsEstablishedReplayed|TestHugeResponseHeads|TestFloodBodies)$$' ./cmd/shadowtap

# The soak, not in CI (needs root): the lab's mix at half the lossless rate
# for DURATION, RSS, heap, goroutines and open fds every minute; fails when
# one trends upward after the 5-minute warm-up (longer than --idle-timeout:
# until then the flow table only fills).
DURATION ?= 30m
SOAK_RATE ?= 150k
soak:
	$(GO) run ./scripts/benchlab --modes xdp --soak $(DURATION) --soak-rate $(SOAK_RATE)

bench-bpf:
	$(GO) test -run '^$$' -bench BenchmarkXDP -benchtime 2s ./pkg/xdp/

# The lab benchmark: both shapes of issue 12 (1 request per connection,
# keep-alive), parse-only and end to end with and without the comparison,
# against the minimal shadow, one request at a time and pipelined; then one
# reference run against net/http's server.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...
	$(GO) run ./scripts/benchlab
	$(GO) run ./scripts/benchlab --shadowtap-args "--pipeline 16 --max-inflight 4"
	$(GO) run ./scripts/benchlab --shadow nethttp --variants compare --rates 100k,200k,max

demo: build
	./scripts/demo.sh

# The unit's ExecStart follows PREFIX; the env file (flags, possibly secrets in
# --set-header) is kept when present and readable by root and the service only.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/shadowtap
	install -d $(DESTDIR)/etc/systemd/system
	sed 's|@PREFIX@|$(PREFIX)|g' scripts/shadowtap.service > $(DESTDIR)/etc/systemd/system/shadowtap.service
	install -D -m 0644 scripts/shadowtap.sysusers $(DESTDIR)/usr/lib/sysusers.d/shadowtap.conf
	test -e $(DESTDIR)/etc/default/shadowtap || install -D -m 0640 scripts/shadowtap.env.example $(DESTDIR)/etc/default/shadowtap
	if [ -z "$(DESTDIR)" ]; then systemd-sysusers /usr/lib/sysusers.d/shadowtap.conf && \
		chgrp shadowtap /etc/default/shadowtap; systemctl daemon-reload 2>/dev/null || true; fi

uninstall:
	if [ -z "$(DESTDIR)" ]; then systemctl disable --now shadowtap 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/shadowtap $(DESTDIR)/etc/systemd/system/shadowtap.service \
		$(DESTDIR)/usr/lib/sysusers.d/shadowtap.conf
	@echo "kept /etc/default/shadowtap (your flags) and the shadowtap user; remove them by hand if unwanted"

lab-up:
	./scripts/lab.sh up --name $(LAB)

lab-down:
	./scripts/lab.sh down --name $(LAB)

clean:
	rm -rf bin
