# headroute: build glue. The Java build is Maven's; this file adds the CUDA kernels and short names.
#   make build    kernels, then the jar and its runtime dependencies (target/lib/)
#   make kernels  cuda-kernels/NAME.cu -> target/kernels/NAME.fatbin (skipped without nvcc; fails on spills)
#   make native   native/ -> target/native/libcublas.so.12, the cuBLAS 12 -> 13 shim
#   make emu      native/emu -> target/native/emu: the CPU emulator (kernels as C++, fake libcuda/cuBLAS)
#   make test     kernels, then the whole test suite (GPU tests skip themselves without a GPU), then emu-test
#   make emu-test the emulator's own tests, then the GPU-tagged tests on the emulator (no GPU needed)
#   make run      build if needed, then the default experiment into out/experiment (replacing an old one)
#   make bench    build if needed, then ./headroute bench --backend cpu
#   make device-bundle  build, then build/device/: what a GPU machine without Maven needs (scripts/README.md)
#   make clean    remove target/
# Variables: MVN (default "mvn -B"), MVN_FLAGS (e.g. "-o -q"), NVCC, NVCC_FLAGS.

SHELL := /bin/bash
MVN ?= mvn -B
MVN_FLAGS ?=
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
NVCC_FLAGS ?= -O3 -std=c++17

# Ampere (sm_80, sm_86), Ada (sm_89), Hopper (sm_90) machine code, plus compute_90 PTX for newer GPUs.
GENCODE := -gencode arch=compute_80,code=sm_80 \
           -gencode arch=compute_86,code=sm_86 \
           -gencode arch=compute_89,code=sm_89 \
           -gencode arch=compute_90,code=sm_90 \
           -gencode arch=compute_90,code=compute_90

CU_SOURCES := $(sort $(wildcard cuda-kernels/*.cu))
CU_HEADERS := $(wildcard cuda-kernels/*.cuh cuda-kernels/*.h)
KERNEL_DIR := target/kernels
# One fatbin (one CUDA module) per .cu file: each kernel family is loaded on its own.
FATBINS := $(patsubst cuda-kernels/%.cu,$(KERNEL_DIR)/%.fatbin,$(CU_SOURCES))
NATIVE_DIR := target/native
# The wgmma kernels (flash_fwd_wgmma.cu) use sm_90a's arch-specific instructions: sm_90a machine code only,
# no PTX (arch-specific PTX runs on no later architecture either).
$(KERNEL_DIR)/flash_fwd_wgmma.fatbin: GENCODE := -gencode arch=compute_90a,code=sm_90a

VERSION := $(shell sed -n 's|^  <version>\(.*\)</version>$$|\1|p' pom.xml | head -n 1)
JAR := target/headroute-$(VERSION).jar
JAVA_SOURCES := $(shell find java -type f 2>/dev/null)

.DEFAULT_GOAL := build
.PHONY: build kernels native emu emu-test test run bench clean

build: kernels native
	$(MVN) $(MVN_FLAGS) package -DskipTests

# The jar as a file, so that `make run` and `make bench` build only when something changed.
$(JAR): pom.xml $(JAVA_SOURCES) $(CU_SOURCES) $(CU_HEADERS)
	@$(MAKE) --no-print-directory build
	@touch $@

ifeq ($(strip $(NVCC)),)
kernels:
	@echo "kernels: nvcc not found; skipping CUDA kernels (the CPU engine still works)"
else ifeq ($(strip $(CU_SOURCES)),)
kernels:
	@echo "kernels: no .cu files in cuda-kernels/; nothing to compile"
else
kernels: $(KERNEL_DIR)/ptxas.txt

# ptxas's register/spill report for every kernel; a kernel that spills registers (or whose wgmma ptxas
# serializes) fails the build.
$(KERNEL_DIR)/ptxas.txt: $(FATBINS)
	@cat $(FATBINS:.fatbin=.ptxas.txt) > $@
	@if grep -E '[1-9][0-9]* bytes spill (stores|loads)' $@ >/dev/null; then \
		echo "kernels: register spills (see $@):" >&2; grep -B2 -E '[1-9][0-9]* bytes spill' $@ >&2; rm -f $@; exit 1; fi
	@# ptxas serializes wgmma it cannot pipeline (C751x "Potential Performance Loss"), or injects warpgroup
	@# waits/arrives where the code touches wgmma registers unfenced (C7517, C7519): as bad as a spill.
	@if grep -E 'wgmma.mma_async instructions are serialized|warpgroup\.(arrive|wait) is injected' $@ >/dev/null; then \
		echo "kernels: serialized wgmma (see $@):" >&2; grep -E 'serialized|is injected' $@ >&2; rm -f $@; exit 1; fi
	@echo "kernels: $(words $(FATBINS)) modules in $(KERNEL_DIR), no register spills"

$(KERNEL_DIR)/%.fatbin: cuda-kernels/%.cu $(CU_HEADERS)
	@mkdir -p $(KERNEL_DIR)
	@echo "kernels: $< -> $@"
	@$(NVCC) -fatbin $(NVCC_FLAGS) $(GENCODE) -Icuda-kernels -Xptxas -v -Werror all-warnings \
		-o $@ $< 2> $(@:.fatbin=.ptxas.txt) \
		|| { cat $(@:.fatbin=.ptxas.txt) >&2; rm -f $@; exit 1; }
endif

# The cuBLAS 12 -> 13 compatibility shim (x86-64 Linux, gcc).
native:
	@if command -v $${CC:-gcc} >/dev/null 2>&1 && [ "$$(uname -m)" = x86_64 ]; then \
		$(MAKE) --no-print-directory -C native OUT=$(CURDIR)/$(NATIVE_DIR); \
	else echo "native: gcc or x86-64 missing; skipping the cuBLAS shim"; fi

# The CPU emulator needs g++ on x86-64 Linux and CUDA's headers (cuda.h: the fake driver's ABI); the GPU tests
# on it also need the compiled kernels (KernelModule loads the packaged fatbins before the emulator resolves
# kernels by name).
EMU_DIR := target/native/emu
CUDA_INCLUDE ?= $(patsubst %/,%,$(dir $(firstword $(wildcard $(dir $(realpath $(NVCC)))../include/cuda.h /usr/local/cuda/include/cuda.h))))
EMU_OK := $(shell command -v g++ >/dev/null 2>&1 && [ "$$(uname -m)" = x86_64 ] && [ -f "$(CUDA_INCLUDE)/cuda.h" ] && echo yes)

ifeq ($(EMU_OK),yes)
emu:
	@$(MAKE) --no-print-directory -C native/emu OUT=$(CURDIR)/$(EMU_DIR) CUDA_INCLUDE=$(CUDA_INCLUDE)

# GPU-tagged tests (not gpu-long) and the emulator's own JVM tests, with the fake libcuda.so.1 first on the
# loader's path and JCublas going through the shim to the fake libcublas.so.13; every launch's executed
# instructions go to launches.tsv (EmulatedWorkTest reads them).
emu-test: kernels native emu
	@$(MAKE) --no-print-directory -C native/emu OUT=$(CURDIR)/$(EMU_DIR) CUDA_INCLUDE=$(CUDA_INCLUDE) test
	rm -f $(EMU_DIR)/launches.tsv
	LD_LIBRARY_PATH=$(CURDIR)/$(EMU_DIR)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} HR_EMU_STATS=$(CURDIR)/$(EMU_DIR)/launches.tsv \
		$(MVN) $(MVN_FLAGS) test -Dtest.groups='gpu | emu' -Dtest.excludedGroups=gpu-long \
		-Dheadroute.emulator=true -Dheadroute.cublas13=$(CURDIR)/$(EMU_DIR)/libcublas.so.13 -Dsurefire.reportNameSuffix=emu
else
emu emu-test:
	@echo "$@: the CPU emulator needs g++ on x86-64 Linux and CUDA's cuda.h (CUDA_INCLUDE=$(CUDA_INCLUDE)); skipped"
endif

test: kernels native
	$(MVN) $(MVN_FLAGS) test
	@$(MAKE) --no-print-directory emu-test

# The default experiment: the cpu preset without a GPU (10-45 s on 2 cores, see README), gpu-32k with one.
EXPERIMENT_OUT := out/experiment
run: $(JAR)
	rm -rf $(EXPERIMENT_OUT)
	mkdir -p $(dir $(EXPERIMENT_OUT))
	./headroute experiment --out $(EXPERIMENT_OUT)

bench: $(JAR)
	./headroute bench --backend cpu

clean:
	rm -rf target
	$(MAKE) --no-print-directory -C native OUT=$(CURDIR)/$(NATIVE_DIR) clean >/dev/null 2>&1 || true


# The one-call GPU device check's bundle, build/device/ (at most 48 MiB): a jlink runtime, the jars, the
# test jars with JUnit's console launcher, the kernels and the cuBLAS shim; see scripts/README.md.
# `build` compiles the tests too (Maven's package phase runs test-compile even with -DskipTests).
.PHONY: device-bundle
device-bundle: build
	MVN="$(MVN) $(MVN_FLAGS)" bash scripts/make-device-bundle.sh
