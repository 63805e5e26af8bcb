#!/usr/bin/env bash
# The whole check: system packages, Python environment, lint, tests. CI runs it through
# `make test` on a clean clone, as root, without stdin. Extra arguments go to pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

APT_UPDATED=0

# need_apt PKG...: install the Debian packages among PKG that are missing. Only root can;
# anyone else gets a warning, and the tests that need the package fail with their own reason.
need_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then return 0; fi
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "warning: missing system packages: ${missing[*]} (install them as root)" >&2
        return 0
    fi
    log "apt-get install ${missing[*]}"
    if ((APT_UPDATED == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null
}

# ---- system packages the tests use (later work adds gfal2, xrootd, chromium here)
if command -v dpkg-query >/dev/null 2>&1; then
    need_apt postgresql rabbitmq-server
    need_apt gfal2 gfal2-plugin-file gfal2-plugin-xrootd gfal2-plugin-http python3-gfal2 \
        xrootd-server xrootd-client
    need_apt nginx
    # the web pages' browser tests: Debian's Chromium, driven by Playwright (never its own
    # browser download), and the fonts the pages are drawn with
    need_apt chromium fonts-liberation
    # tests/deploy renders the Kubernetes manifests with `kubectl kustomize`; kubectl comes
    # from the Kubernetes (or Google Cloud) apt repository, where the machine has one.
    if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1 \
        && apt-cache show kubectl >/dev/null 2>&1; then
        need_apt kubectl
    fi
fi

# ---- uv and the environment
if command -v uv >/dev/null 2>&1; then
    UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
    UV=(python3 -m uv)
else
    log "installing uv with pip"
    python3 -m pip install --quiet uv </dev/null
    UV=(python3 -m uv)
fi

log "uv sync"
if [[ -f uv.lock ]]; then
    "${UV[@]}" sync --frozen --all-packages </dev/null
else
    "${UV[@]}" sync --all-packages </dev/null
fi

# gfal2 comes from Debian, not PyPI: link its module into the environment uv just synced.
# A missing module fails the run here, with the reason, rather than as storage test failures.
log "link gfal2 into the environment"
bash scripts/link-gfal2.sh "${UV[@]}"

# ---- lint and tests: both run, so one CI run reports both; any failure fails the script
status=0

log "make lint"
if ! make --no-print-directory lint UV="${UV[*]}"; then
    echo "lint failed" >&2
    status=1
fi

log "pytest"
set +e
"${UV[@]}" run pytest -q -rfER -p no:cacheprovider --durations=25 "$@" </dev/null
rc=$?
set -e
if ((rc == 5)); then
    echo "pytest collected no tests: that is a failure" >&2
    status=1
elif ((rc != 0)); then
    echo "pytest failed (exit $rc)" >&2
    status=1
fi

if ((status == 0)); then
    log "all checks passed"
fi
exit "$status"
