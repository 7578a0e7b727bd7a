# Build and install as the Lotus guides say: `make`, `make lotus-miner`, `make lotus-worker`,
# the old names `make lotus-storage-miner` and `make lotus-seal-worker`, `sudo make install`.
# The binaries land in the repository root, as Lotus's do. PROFILE=dev builds without
# optimisation (fast to build, slow to seal); CARGO_FLAGS adds e.g. `--features opencl`.

CARGO ?= cargo
PROFILE ?= release
CARGO_FLAGS ?=
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(DESTDIR)$(PREFIX)/bin
TARGET_DIR ?= target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))

# lotus-devnet: the devnet full node the miner reaches the chain through when no Lotus node is there.
BINS := lotus-miner lotus-worker lotus-devnet
OLD_NAMES := lotus-storage-miner lotus-seal-worker

.PHONY: all build install clean test $(BINS) $(OLD_NAMES)

all: $(BINS) $(OLD_NAMES)

build:
	$(CARGO) build --locked --profile $(PROFILE) -p lotus --bins $(CARGO_FLAGS)

$(BINS): build
	cp -f $(TARGET_DIR)/$@ ./$@

# The old names run the same binaries; under `lotus-storage-miner` the default repo is
# ~/.lotusstorage, as in the first guides.
lotus-storage-miner: lotus-miner
	ln -sf lotus-miner $@

lotus-seal-worker: lotus-worker
	ln -sf lotus-worker $@

install: build
	install -d $(BINDIR)
	install -m 755 $(TARGET_DIR)/lotus-miner $(TARGET_DIR)/lotus-worker $(TARGET_DIR)/lotus-devnet $(BINDIR)/
	ln -sf lotus-miner $(BINDIR)/lotus-storage-miner
	ln -sf lotus-worker $(BINDIR)/lotus-seal-worker

clean:
	$(CARGO) clean
	rm -f $(BINS) $(OLD_NAMES)

# The README's test command (what CI runs).
test:
	./scripts/test.sh
