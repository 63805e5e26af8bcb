#!/usr/bin/env bash
# Make Debian's gfal2 Python module importable from the project's virtual environment.
#
# `pip install gfal2-python` does not build against Debian 12's gfal2, but the distribution's
# module has the same CPython ABI as the project's Python. Only that one file is linked: putting
# all of /usr/lib/python3/dist-packages on the path would shadow the locked dependencies with
# whatever Debian happens to ship.
#
# Usage: scripts/link-gfal2.sh [uv command...]   (default: uv, or python3 -m uv)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if (($# > 0)); then
    UV=("$@")
elif command -v uv >/dev/null 2>&1; then
    UV=(uv)
else
    UV=(python3 -m uv)
fi

DIST=/usr/lib/python3/dist-packages
shopt -s nullglob
candidates=("$DIST"/gfal2*.so)
shopt -u nullglob
if ((${#candidates[@]} == 0)); then
    echo "error: no gfal2*.so in $DIST: install python3-gfal2 (apt-get install -y python3-gfal2" \
        "gfal2 gfal2-plugin-file gfal2-plugin-xrootd gfal2-plugin-http)" >&2
    exit 1
fi
if ((${#candidates[@]} > 1)); then
    echo "error: several gfal2 modules in $DIST, cannot tell which to use: ${candidates[*]}" >&2
    exit 1
fi
module=${candidates[0]}

# Ask the environment itself: the site-packages path depends on the interpreter uv picked.
purelib=$("${UV[@]}" run --no-sync python -c \
    "import sysconfig; print(sysconfig.get_paths()['purelib'])" </dev/null)
if [[ ! -d $purelib ]]; then
    echo "error: site-packages of the project environment not found ($purelib): run uv sync" >&2
    exit 1
fi

ln -sfn "$module" "$purelib/$(basename "$module")"

# An ABI mismatch (another Python minor version) only shows at import time: check now.
if ! "${UV[@]}" run --no-sync python -c "import gfal2; gfal2.creat_context()" </dev/null; then
    echo "error: gfal2 is linked into $purelib but does not import" >&2
    exit 1
fi
echo "gfal2 linked: $purelib/$(basename "$module") -> $module" >&2
