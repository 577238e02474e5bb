#!/usr/bin/env bash
# Installs what the real-CLI agent suite (tests/agents) runs: Claude Code and Codex, both from the
# npm registry, into a cache outside the repo. A rerun with both in place is a no-op and needs no
# network. When npm cannot be reached it fails loudly: the suite is never skipped in silence.
#
# Both packages are thin wrappers around a native binary in a per-platform optional dependency
# (@anthropic-ai/claude-code-linux-x64, @openai/codex-linux-x64, …), so nothing here needs a
# particular Node: the system's npm only unpacks them, with --ignore-scripts (claude-code's
# postinstall merely copies its binary over a placeholder), and the suite runs the binaries
# themselves.
#
#   FLEETBOT_E2E_CLAUDE   a claude executable to use instead of installing one
#   FLEETBOT_E2E_CODEX    a codex executable to use instead of installing one
#   FLEETBOT_E2E_CACHE    where to install (default ${XDG_CACHE_HOME:-$HOME/.cache}/fleetbot-e2e)
#
# The last two lines printed are `FLEETBOT_E2E_CLAUDE=…` and `FLEETBOT_E2E_CODEX=…`: what the
# suite's fixtures then use.
set -euo pipefail

CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0
cache=${FLEETBOT_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetbot-e2e}

die() {
    echo "install_agent_clis: $*" >&2
    exit 1
}

npm_reachable() {
    command -v npm > /dev/null || die "npm is not installed; install Node.js and npm (e.g. \
apt-get install npm), or set FLEETBOT_E2E_CLAUDE and FLEETBOT_E2E_CODEX to installed binaries"
    if ! out=$(npm view --fetch-retries=1 --fetch-timeout=20000 "$1" version 2>&1); then
        echo "$out" >&2
        die "cannot reach the npm registry ($(npm config get registry)) to fetch $1; the \
real-CLI agent suite needs it once per machine (or set FLEETBOT_E2E_CLAUDE and FLEETBOT_E2E_CODEX)"
    fi
}

# npm install into a staging folder, then one rename: an interrupted install never looks done.
npm_install() {
    local dest=$1 spec=$2
    npm_reachable "$spec"
    rm -rf "$dest.partial"
    mkdir -p "$dest.partial"
    echo "install_agent_clis: npm install $spec -> $dest"
    npm install --prefix "$dest.partial" --no-audit --no-fund --no-update-notifier \
        --loglevel=error --ignore-scripts "$spec" || die "npm install $spec failed (see above)"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
}

# The first of the given binaries whose `--version` mentions $1; empty if none does.
first_working() {
    local want=$1 bin
    shift
    for bin in "$@"; do
        if [ -x "$bin" ] && "$bin" --version 2> /dev/null | grep -qF "$want"; then
            echo "$bin"
            return
        fi
    done
}

# Installs $2@$3 into $cache/$1-$3 unless a binary matching $4 (a glob under node_modules)
# already runs there, and prints the binary's path.
install_cli() {
    local name=$1 package=$2 version=$3 glob=$4 dir bin
    dir=$cache/$name-$version
    # shellcheck disable=SC2086  # the glob is meant to expand
    bin=$(first_working "$version" $dir/node_modules/$glob)
    if [ -z "$bin" ]; then
        npm_install "$dir" "$package@$version" >&2
        # shellcheck disable=SC2086
        bin=$(first_working "$version" $dir/node_modules/$glob)
        [ -n "$bin" ] || die "$package@$version installed, but no native binary for this \
machine ($(uname -sm)) runs; looked for $dir/node_modules/$glob"
    fi
    echo "$bin"
}

mkdir -p "$cache"
exec 9> "$cache/.lock-agent-clis"
flock 9 # one install at a time per cache

if [ -n "${FLEETBOT_E2E_CLAUDE:-}" ]; then
    claude=$FLEETBOT_E2E_CLAUDE
    [ -x "$claude" ] || die "FLEETBOT_E2E_CLAUDE=$claude is not an executable"
else
    claude=$(install_cli claude-code @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION" \
        '@anthropic-ai/claude-code-linux-*/claude')
fi

if [ -n "${FLEETBOT_E2E_CODEX:-}" ]; then
    codex=$FLEETBOT_E2E_CODEX
    [ -x "$codex" ] || die "FLEETBOT_E2E_CODEX=$codex is not an executable"
else
    codex=$(install_cli codex @openai/codex "$CODEX_VERSION" \
        '@openai/codex-linux-*/vendor/*/bin/codex')
fi

echo "$("$claude" --version) ($claude)"
echo "$("$codex" --version) ($codex)"
echo "FLEETBOT_E2E_CLAUDE=$claude"
echo "FLEETBOT_E2E_CODEX=$codex"
