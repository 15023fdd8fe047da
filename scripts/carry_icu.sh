#!/usr/bin/env bash
# The GPU machine has ICU's runtime but not libicu-dev, and no network to install it. This copies
# this machine's ICU (headers and shared libraries) into .carry/icu, an ignored folder that a
# device call carries (`carry: [".carry"]`); scripts/build.sh uses it where libicu-dev is missing.
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
du -sh .carry/icu
