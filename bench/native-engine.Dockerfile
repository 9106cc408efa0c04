# bench/cpu_variant_vs_native.sh only: llama-bench built for THIS machine's CPU (-march=native, one
# CPU backend linked in), to compare with the variant Debian's ggml picks at run time. Never
# shipped, nothing else builds it.
#
# Debian's own ggml/llama.cpp source (build 11669) cannot be fetched here (no source packages on
# the mirror), so the native build uses the llama.cpp tree that PyPI's llama-cpp-python sdist
# vendors (an older llama.cpp, pinned by version and sha256 below). The ratio therefore mixes
# "portable variant vs native flags" with "Debian's newer code vs that older code".
ARG BASE_IMAGE=debian:forky-slim
FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG LLAMA_CPP_PYTHON_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
# hadolint ignore=DL3008
RUN apt-get -o Acquire::Check-Valid-Until=false update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential cmake ninja-build python3-pip ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    PIP_CONFIG_FILE=/dev/null python3 -m pip download --no-deps \
      --no-binary llama-cpp-python --dest /tmp/sdist "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"; \
    sdist="/tmp/sdist/llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}.tar.gz"; \
    echo "${LLAMA_CPP_PYTHON_SHA256}  ${sdist}" | sha256sum -c -; \
    mkdir -p /src; \
    tar -xzf "${sdist}" -C /src --strip-components=3 "llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp"; \
    cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
      -DGGML_NATIVE=ON -DGGML_BACKEND_DL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF; \
    cmake --build /build --target llama-bench; \
    mkdir /out; cp /build/bin/llama-bench /out/llama-bench.elf

FROM scratch AS export
COPY --from=build /out/ /
