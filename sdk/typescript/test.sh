#!/usr/bin/env bash
# The TypeScript SDK's checks: strict tsc, then the package packed (`npm pack`) and installed into
# a clean folder, and Node's test runner run there against that installed copy (so a file
# missing from the package fails), with the gateway built from this repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
clean="$root/target/test-env/sdk-typescript-clean"
dist="$root/target/sdk-typescript-dist"

cd "$here"
npm ci --no-audit --no-fund --loglevel=error
echo "tsc --strict"
npx tsc -p tsconfig.json --noEmit
echo "npm pack"
rm -rf "$dist" && mkdir -p "$dist"
npm pack --silent --pack-destination "$dist" > /dev/null

echo "installing the package into a clean folder"
rm -rf "$clean" && mkdir -p "$clean"
cp -r "$here/test" "$here/e2e" "$clean/"
tarball="$(ls "$dist"/handsign-*.tgz)"
redis_version="$(node -p 'require("./package.json").devDependencies.redis')"
(cd "$clean" && echo '{"type":"module","private":true}' > package.json \
  && npm install --no-audit --no-fund --loglevel=error "$tarball" "redis@$redis_version")

# scripts/test passes the binary its cargo test built; alone, build it.
if [ -z "${HANDSIGN_BIN:-}" ]; then
  cargo build --quiet --locked --bin handsign --manifest-path "$root/Cargo.toml"
  HANDSIGN_BIN="$root/target/debug/handsign"
fi
echo "node --test against the installed package"
cd "$clean"
HANDSIGN_BIN="$HANDSIGN_BIN" HANDSIGN_REPO="$root" node --test test/
