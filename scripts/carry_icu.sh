#!/usr/bin/env bash
# The GPU machine has ICU's runtime but not libicu-dev, and no network to install it. This copies
# this machine's ICU (headers and shared libraries) into .carry/icu, an ignored folder that a
# device call carries; scripts/build.sh uses it where libicu-dev is missing. The device call carries
# .carry/icu.tar.xz (10 MB, against 40 MB unpacked: the working tree that travels is capped at
# 64 MiB and the trained checkpoints take 18 MB of it); build.sh and gpu_run.sh unpack it there.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(dirname "$(readlink -f "$(ls /usr/lib/*/libicuuc.so | head -1)")")
rm -rf .carry/icu
mkdir -p .carry/icu/include .carry/icu/lib
cp -r /usr/include/unicode .carry/icu/include/
for part in uc i18n data; do
  real=$(readlink -f "$lib/libicu$part.so")
  cp "$real" .carry/icu/lib/
  soname=$(basename "$real" | sed -E 's/(\.so\.[0-9]+).*/\1/')
  ln -sf "$(basename "$real")" ".carry/icu/lib/$soname"
  ln -sf "$(basename "$real")" ".carry/icu/lib/libicu$part.so"
done
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.carry/' >> .git/info/exclude; }
tar cJf .carry/icu.tar.xz -C .carry icu
du -sh .carry/icu .carry/icu.tar.xz
