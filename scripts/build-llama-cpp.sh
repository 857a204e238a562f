#!/usr/bin/env bash
# Builds llama.cpp's llama-batched-bench, llama-bench and llama-server from the llama.cpp
# source vendored in the PyPI sdist of llama-cpp-python, for the baseline in BENCHMARKS.md and the
# tests of thresh in front of llama-server (server/tests/remote_llama_cpp.rs).
# cmake and ninja come from pip. Output: $LLAMA_CPP_DIR (default target/llama.cpp)/bin.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${LLAMA_CPP_DIR:-$root/target/llama.cpp}"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
if [ -x "$out/bin/llama-batched-bench" ] && [ -x "$out/bin/llama-server" ]; then
  echo "build-llama-cpp: present in $out/bin"
  exit 0
fi
python3 -m pip install --quiet --disable-pip-version-check cmake ninja
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
  "llama-cpp-python==$version" -d "$work"
tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp)
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >/dev/null
cmake --build "$work/build" --target llama-batched-bench llama-bench llama-server -j "$(nproc)"
mkdir -p "$out/bin"
cp "$work"/build/bin/llama-batched-bench "$work"/build/bin/llama-bench "$work"/build/bin/llama-server "$out/bin/"
echo "build-llama-cpp: built llama.cpp from llama-cpp-python $version into $out/bin"
