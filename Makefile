# The two commands: `make run` (fetch, build, serve) and `make test` (every test).
# Everything else here is what those two call, plus helpers for development.

CARGO ?= cargo
ASSETS ?= assets
CONFIG ?= deploy/ferroserve.toml

.PHONY: run test assets ui ui-screenshots build build-release test-rust test-python venv packages lint fmt bench clean-assets

## Fetch what is missing, build in release, make the ONNX variants, and serve the default model repository.
run: assets ui build-release
	deploy/make-variants.sh ./target/release/ferroserve $(ASSETS)
	./target/release/ferroserve serve --config $(CONFIG)

## Run every test: unit, model, end-to-end (Rust), the SIMD tests again on emulated CPUs without AVX-512 and
## without AVX, and real third-party clients (Python).
test: assets ui venv packages build
	deploy/make-variants.sh ./target/debug/ferroserve $(ASSETS)
	$(CARGO) test --workspace
	CARGO=$(CARGO) tests/other-cpus.sh
	tests/.venv/bin/python -m pytest -q tests/python

assets:
	deploy/fetch-assets.sh $(ASSETS)

## The web console's script (serve/ui/dist/app.js, embedded by the build): TypeScript checked and bundled.
ui:
	serve/ui/build.sh

build:
	$(CARGO) build --workspace --tests --bins

build-release:
	$(CARGO) build --release --bin ferroserve

venv:
	tests/python/setup-venv.sh

## Debian packages the tests use: the Redis server the shared-cache tests start, curl, openssl, Chromium.
packages:
	tests/setup-packages.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Retake the README's screenshots of the web console (serve/ui/screenshots) with its browser tests.
ui-screenshots: ui build
	FERROSERVE_UI_SCREENSHOTS=serve/ui/screenshots tests/.venv/bin/python -m pytest -q tests/python/test_console.py

## Load test a running server (start it with `make run` in another shell), over HTTP then gRPC.
bench:
	./target/release/ferroserve bench load --api openai-embeddings --concurrency 1,8,32 --requests 2000 --results benches/RESULTS.md
	./target/release/ferroserve bench load --api grpc --url http://127.0.0.1:50051 --concurrency 1,8,32 --requests 2000 --results benches/RESULTS.md

clean-assets:
	rm -rf $(ASSETS)
