#!/bin/sh
# Builds libstratakernels.so from kernels.c, once per instruction set, into $1 (the Maven build calls this in
# generate-resources; the library is then packaged into the jar under native/<os>-<arch>/).
# No C compiler, or not Linux x86-64: print why and exit 0, so that the build goes on with the Java kernels.
# STRATA_CC overrides the compiler; STRATA_CC=none simulates a machine without one.
set -eu
out="$1"
src="$(cd "$(dirname "$0")" && pwd)"
if [ "$(uname -s)" != "Linux" ] || [ "$(uname -m)" != "x86_64" ]; then
  echo "[strata-native] skipped: native kernels are built for Linux x86-64 only (this is $(uname -s) $(uname -m)); the Java kernels will be used"
  exit 0
fi
cc="${STRATA_CC:-}"
if [ -z "$cc" ]; then
  for candidate in gcc clang cc; do
    if command -v "$candidate" >/dev/null 2>&1; then cc="$candidate"; break; fi
  done
fi
if [ -z "$cc" ] || [ "$cc" = "none" ] || ! command -v "$cc" >/dev/null 2>&1; then
  echo "[strata-native] skipped: no C compiler (gcc, clang or cc) found; the Java (Vector API) kernels will be used"
  exit 0
fi
if [ -f "$out/libstratakernels.so" ] && [ -z "$(find "$src" -newer "$out/libstratakernels.so" -name '*.[ch]' -o -newer "$out/libstratakernels.so" -name build.sh)" ]; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
flags="-O3 -fPIC -fvisibility=hidden -std=c11 -Wall -Wextra"
"$cc" $flags -c "$src/cpu.c" -o "$tmp/cpu.o"
"$cc" $flags -DISA=avx512vnni -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512dq -mavx2 -mfma -mf16c -c "$src/kernels.c" -o "$tmp/avx512vnni.o"
"$cc" $flags -DISA=avx512bw -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c -c "$src/kernels.c" -o "$tmp/avx512bw.o"
"$cc" $flags -DISA=avx2 -mavx2 -mfma -mf16c -c "$src/kernels.c" -o "$tmp/avx2.o"
mkdir -p "$out"
"$cc" -shared -o "$tmp/libstratakernels.so" "$tmp/cpu.o" "$tmp/avx512vnni.o" "$tmp/avx512bw.o" "$tmp/avx2.o" -lm
mv "$tmp/libstratakernels.so" "$out/libstratakernels.so"
echo "[strata-native] built $out/libstratakernels.so with $("$cc" --version | head -1)"
