#!/usr/bin/env bash
# The Python SDK's checks: mypy --strict, then the wheel built and installed into a clean
# environment, and pytest run against that installed copy (so a file missing from the package
# fails), with the gateway built from this repository. Run from anywhere; scripts/test runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="$root/target/test-env/sdk-python-tools"
clean="$root/target/test-env/sdk-python-clean"
dist="$root/target/sdk-python-dist"

if [ ! -x "$tools/bin/python" ]; then
  python3 -m venv "$tools"
fi
"$tools/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements-test.txt"

echo "mypy --strict"
(cd "$here" && "$tools/bin/mypy" --strict src)

echo "python -m build"
rm -rf "$dist"
"$tools/bin/python" -m build --no-isolation --outdir "$dist" "$here" > /dev/null 2>&1 || \
  "$tools/bin/python" -m build --no-isolation --outdir "$dist" "$here"

echo "installing the wheel into a clean environment"
rm -rf "$clean"
python3 -m venv "$clean"
"$clean/bin/python" -m pip install -q --disable-pip-version-check \
  "$(ls "$dist"/handsign-*.whl)[redis,fastapi]" -r "$here/requirements-test.txt"

# scripts/test passes the binary its cargo test built; alone, build it.
if [ -z "${HANDSIGN_BIN:-}" ]; then
  cargo build --quiet --locked --bin handsign --manifest-path "$root/Cargo.toml"
  HANDSIGN_BIN="$root/target/debug/handsign"
fi
echo "pytest against the installed package"
cd "$here/tests"
HANDSIGN_BIN="$HANDSIGN_BIN" HANDSIGN_SDK_INSTALLED=1 \
  "$clean/bin/python" -m pytest -q -p no:cacheprovider "$@"
