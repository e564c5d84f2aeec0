# Thin wrapper over CMake: these are the commands people type.
#   make          build build/dflash and the library (Release)
#   make run      the main job: build, then run the CLI end to end
#   make test     install missing Debian packages, build Release + ASan/UBSan, run ctest on both, fuzz
JOBS      ?= $(shell nproc)
BUILD     ?= build
ASAN      ?= build-asan
FUZZ      ?= build-fuzz
FUZZ_SECS ?= 60
CMAKE_ARGS ?=

.PHONY: all build run test deps test-release test-asan fuzz clean

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

run: build
	bash scripts/run-demo.sh $(BUILD)/dflash

deps:
	bash scripts/install-deps.sh

test: deps test-release test-asan fuzz

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan:
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DDFLASH_SANITIZE=ON -DCMAKE_C_COMPILER=gcc $(CMAKE_ARGS)
	cmake --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ctest --output-on-failure -j $(JOBS)

fuzz:
	cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDFLASH_FUZZ=ON -DCMAKE_C_COMPILER=clang $(CMAKE_ARGS)
	cmake --build $(FUZZ) -j $(JOBS)
	bash scripts/run-fuzzers.sh $(FUZZ) $(FUZZ_SECS)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
