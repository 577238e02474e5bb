#!/usr/bin/env bash
# Builds the Docker image and runs it for real, with no Docker engine and no container registry:
# buildah from Debian's packages (`apt-get install buildah debootstrap`), as root.
#
#   bash scripts/docker_check.sh
#
# 1. A local base image, localhost/fleetbot-base: Debian bookworm with python3 and python3-venv,
#    debootstrapped from Debian's mirror (the Dockerfile's default, python:3.11-slim, would need a
#    registry). The rootfs and the image are cached in ${XDG_CACHE_HOME:-~/.cache}/fleetbot-docker,
#    with buildah's own storage, so a second run is fast. `rm -rf` that folder to start over.
# 2. The real Dockerfile, built on it: `--build-arg BASE=localhost/fleetbot-base`.
# 3. What the README says to do with the image, each `docker run` done as a fresh container from
#    it with a host folder as the /data volume: init, check, edit the config inside the volume
#    (copied out with cat, edited, copied back through a throwaway container); the image's CMD
#    (`run`, with the bot, against the offline Bot API) on the port the edited api.listen names,
#    then `run --no-bot` on the one FLEETBOT_API__LISTEN names. /healthz answers on that port, the
#    image's own HEALTHCHECK command, read from the image, passes inside the container and fails
#    when nothing listens where the config says, and SIGTERM stops fleetbot cleanly.
#    Last, init and check as another user (`--user`) on a host folder of that user's.
#
# Environment: STORAGE_DRIVER (default overlay; vfs where overlay mounts are refused, e.g. inside
# an unprivileged container), FLEETBOT_DOCKER_MIRROR (Debian mirror for debootstrap),
# XDG_CACHE_HOME. Exits non-zero on the first failure; prints no secret (the token files are
# never read, and fleetbot's own output masks them).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s.%N)

say() { printf 'docker_check: %s\n' "$*"; }
fail() {
    printf 'docker_check: FAILED: %s\n' "$*" >&2
    exit 1
}
passed=0
ok() {
    passed=$((passed + 1))
    say "ok  $*"
}
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$1" "$(date +%s.%N)"; }

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap needs it, and so does buildah without a subuid setup)"
for tool in buildah debootstrap python3; do
    command -v "$tool" > /dev/null || fail "$tool is missing: apt-get install -y buildah debootstrap"
done

cache=${XDG_CACHE_HOME:-$HOME/.cache}/fleetbot-docker
suite=bookworm
mirror=${FLEETBOT_DOCKER_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,ca-certificates
export STORAGE_DRIVER=${STORAGE_DRIVER:-overlay}
# chroot isolation: buildah's default OCI runtime (crun) refuses this kind of machine's hybrid
# cgroup setup ("cgroups in hybrid mode not supported"); chroot needs no runtime and shares the
# host's network, so the container's ports are the host's loopback ports.
export BUILDAH_ISOLATION=chroot
store=$cache/storage-$STORAGE_DRIVER
runroot=${XDG_RUNTIME_DIR:-/run}/fleetbot-docker-$STORAGE_DRIVER
b() { buildah --root "$store" --runroot "$runroot" --storage-driver "$STORAGE_DRIVER" "$@"; }
base=localhost/fleetbot-base
image=localhost/fleetbot:check
mkdir -p "$cache"

work=$(mktemp -d /tmp/fleetbot-docker-check.XXXXXX)
containers=()
# Set by `bg server ...` and `bg fake ...`, read by `stop NAME` through their names.
# shellcheck disable=SC2034
server_pid='' server_ctr='' fake_pid='' fake_ctr=''
cleanup() {
    local code=$?
    cleanup_containers > /dev/null 2>&1 || true
    local c
    for c in "${containers[@]}"; do
        b rm "$c" > /dev/null 2>&1 || true
    done
    rm -rf "$work" "$cache/rootfs.tmp"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. the base image -----------------------------------------------------------------------
t=$(date +%s.%N)
key="$suite minbase $packages v1"
tarball=$cache/rootfs-$suite.tar
if [ ! -s "$tarball" ] || [ "$(cat "$tarball.key" 2> /dev/null)" != "$key" ]; then
    say "debootstrap $suite ($packages) from $mirror, once (about a minute)"
    rm -rf "$cache/rootfs.tmp"
    if ! debootstrap --variant=minbase --include="$packages" "$suite" "$cache/rootfs.tmp" \
        "$mirror" > "$work/debootstrap.log" 2>&1; then
        tail -20 "$work/debootstrap.log" >&2
        fail "debootstrap"
    fi
    # What a slim image leaves out too: package downloads and lists, manuals, translations.
    (cd "$cache/rootfs.tmp" && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* \
        usr/share/man/* usr/share/info/* usr/share/doc/* usr/share/locale/*)
    tar -C "$cache/rootfs.tmp" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' \
        --exclude='./sys/*' -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$cache/rootfs.tmp"
    echo "$key" > "$tarball.key"
fi
stamp="$key $(stat -c %Y "$tarball")"
if [ "$(b inspect --type image --format '{{index .Docker.Config.Labels "fleetbot.base"}}' "$base" 2> /dev/null)" != "$stamp" ]; then
    say "committing $base from the cached rootfs"
    c=$(b from scratch)
    containers+=("$c")
    b add "$c" "$tarball" / > /dev/null
    b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 --label "fleetbot.base=$stamp" "$c"
    b commit --quiet --format docker --rm "$c" "$base" > /dev/null
    containers=()
fi
ok "base image $base ($(elapsed "$t"))"

# --- 2. the real Dockerfile ------------------------------------------------------------------
t=$(date +%s.%N)
# Build-time only, never in a layer: the host's CA bundle, so that pip trusts what the host
# trusts (this kind of machine reaches PyPI through a TLS-inspecting proxy whose CA only the
# host's bundle has), and a pip.conf pointing pip at it (pip uses its own bundle otherwise).
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$work/pip.conf"
trust=()
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    trust=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
        -v "$work/pip.conf:/etc/pip.conf:ro")
fi
if ! b bud --format docker --layers --force-rm --pull-never "${trust[@]}" \
    --build-arg BASE="$base" -t "$image" -f Dockerfile . > "$work/build.log" 2>&1; then
    cp "$work/build.log" "$cache/build.log"
    tail -40 "$work/build.log" >&2
    fail "buildah bud (the whole log: $cache/build.log)"
fi
# An older build's image, now untagged, is of no further use (its layers stay cached).
b rmi --prune > /dev/null 2>&1 || true
size=$(b images --format '{{.Size}}' "$image")
ok "built $image from the Dockerfile, $size ($(elapsed "$t"))"

b inspect --type image "$image" > "$work/image.json"
python3 - "$work" << 'EOF' || fail "image config (see above)"
import json, sys
config = json.load(open(f"{sys.argv[1]}/image.json"))["Docker"]["config"]
env = dict(e.split("=", 1) for e in config["Env"])
problems = []
if config.get("User") != "fleetbot":
    problems.append(f"User is {config.get('User')!r}, not fleetbot")
if "/data" not in (config.get("Volumes") or {}):
    problems.append("no VOLUME /data")
if config.get("Entrypoint") != ["fleetbot"]:
    problems.append(f"Entrypoint is {config.get('Entrypoint')!r}")
test = (config.get("Healthcheck") or {}).get("Test") or []
if test[:1] != ["CMD"]:
    problems.append(f"no exec-form HEALTHCHECK: {test!r}")
if "FLEETBOT_API__LISTEN" in env:
    problems.append("FLEETBOT_API__LISTEN is set in the image: it would override api.listen")
for p in problems:
    print(f"docker_check: image config: {p}", file=sys.stderr)
open(f"{sys.argv[1]}/entrypoint", "w").write("\0".join(config["Entrypoint"]))
open(f"{sys.argv[1]}/healthcheck", "w").write("\0".join(test[1:]))
open(f"{sys.argv[1]}/cmd", "w").write("\0".join(config.get("Cmd") or []))
sys.exit(1 if problems else 0)
EOF
mapfile -d '' -t entrypoint < "$work/entrypoint"
mapfile -d '' -t healthcheck < "$work/healthcheck"
ok "image config: user fleetbot, VOLUME /data, ENTRYPOINT fleetbot, a HEALTHCHECK, no listen ENV"

# --- 3. running it ---------------------------------------------------------------------------
new_container() {
    ctr=$(b from --pull-never "$image")
    containers+=("$ctr")
    # buildah mounts an image VOLUME of its own over /data, hiding a -v bind at the same path
    # (with chroot isolation); dropped from this working container only, never from the image.
    b config --volume /data- "$ctr"
}
forget_container() {
    b rm "$1" > /dev/null
    local keep=() c
    for c in "${containers[@]}"; do [ "$c" = "$1" ] || keep+=("$c"); done
    containers=("${keep[@]}")
}
# split_args [--entrypoint PROG] [buildah run options] -- ARGS: sets opts and argv, what
# `docker run [options] IMAGE ARGS` runs: the image's entrypoint (or PROG) with ARGS.
split_args() {
    local entry=("${entrypoint[@]}")
    opts=()
    while [ "$1" != -- ]; do
        if [ "$1" = --entrypoint ]; then
            entry=("$2")
            shift 2
        else
            opts+=("$1")
            shift
        fi
    done
    shift
    argv=("${entry[@]}" "$@")
}
# drun ...: `docker run --rm ...`: a fresh container, the command, then the container is gone.
drun() {
    local opts argv
    split_args "$@"
    new_container
    local mine=$ctr rc=0
    b run "${opts[@]}" "$mine" -- "${argv[@]}" || rc=$?
    forget_container "$mine"
    return "$rc"
}
# bg NAME LOG ...: `docker run -d --name NAME ...`; NAME_pid is its `buildah run`, NAME_ctr its
# container (stop it with stop NAME).
bg() {
    local name=$1 log=$2 opts argv
    shift 2
    split_args "$@"
    new_container
    printf -v "${name}_ctr" %s "$ctr"
    b run "${opts[@]}" "$ctr" -- "${argv[@]}" > "$log" 2>&1 &
    printf -v "${name}_pid" %s "$!"
}
# The processes of a background container: those under its `buildah run` that run a program
# from the container's rootfs (not buildah's own helpers, which run from memory).
processes_of() {
    local top=$1 p q exe root
    for p in /proc/[0-9]*; do
        root=$(readlink "$p/root" 2> /dev/null) || continue
        [ "$root" != / ] || continue
        exe=$(readlink "$p/exe" 2> /dev/null) || continue
        case $exe in "$root"/*) ;; *) continue ;; esac
        q=${p#/proc/}
        while [ "$q" -gt 1 ] && [ "$q" != "$top" ]; do
            q=$(awk '{print $4}' "/proc/$q/stat" 2> /dev/null) || break
        done
        [ "$q" = "$top" ] && echo "${p#/proc/}"
    done
}
# stop NAME: `docker stop NAME && docker rm NAME`: SIGTERM to the container's processes, SIGKILL
# after 10 s; returns the command's exit status.
stop() {
    local pid_var=${1}_pid ctr_var=${1}_ctr pids rc=0
    local pid=${!pid_var} ctr=${!ctr_var}
    [ -n "$pid" ] || return 0
    mapfile -t pids < <(processes_of "$pid")
    [ "${#pids[@]}" = 0 ] || kill -TERM "${pids[@]}" 2> /dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2> /dev/null; then
        mapfile -t pids < <(processes_of "$pid")
        [ "${#pids[@]}" = 0 ] || kill -KILL "${pids[@]}" 2> /dev/null || true
        kill -KILL "$pid" 2> /dev/null || true
    fi
    wait "$pid" || rc=$?
    printf -v "$pid_var" %s ""
    forget_container "$ctr"
    return "$rc"
}
stop_server_cleanly() {
    local rc=0
    stop server || rc=$?
    if [ "$rc" != 0 ] || grep -q Traceback "$work/run.log"; then
        cat "$work/run.log" >&2
        fail "fleetbot run stopped badly on SIGTERM (exit $rc)"
    fi
    ok "SIGTERM (docker stop): fleetbot stopped cleanly, exit 0"
}
cleanup_containers() {
    stop fake > /dev/null 2>&1 || true
    stop server > /dev/null 2>&1 || true
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])'
}
healthz() {
    python3 -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$1/healthz', timeout=2).status == 200 else 1)" 2> /dev/null
}
wait_healthz() {
    for _ in $(seq 1 150); do
        healthz "$1" && return 0
        kill -0 "$server_pid" 2> /dev/null || {
            cat "$work/run.log" >&2
            fail "fleetbot run exited early"
        }
        sleep 0.2
    done
    cat "$work/run.log" >&2
    fail "/healthz on port $1 did not answer in 30s"
}
# The image's HEALTHCHECK command as Docker runs it: inside the running container, with its env.
health_inside() {
    b run "$@" "$server_ctr" -- "${healthcheck[@]}" > "$work/health.log" 2>&1
}

t=$(date +%s.%N)
# A host folder as the volume must be writable by the image's user, uid 10001 (a named Docker
# volume gets that from the image's /data on first use).
data=$work/data
mkdir "$data"
chown 10001:10001 "$data"
volume=(-v "$data:/data")

drun "${volume[@]}" -- init /data > "$work/init.log" 2>&1 || {
    cat "$work/init.log" >&2
    fail "fleetbot init /data"
}
[ -s "$data/config.yaml" ] || fail "init wrote no /data/config.yaml"
[ "$(stat -c %u:%g "$data/config.yaml")" = 10001:10001 ] || fail "config.yaml is not owned by 10001"
[ "$(stat -c %a "$data/secrets/keyring.json")" = 600 ] || fail "the key ring is not mode 0600"
grep -qx '  listen: 0.0.0.0:8080' "$data/config.yaml" || fail "init's config does not listen on 0.0.0.0:8080"
ok "fleetbot init /data: config.yaml, key ring (0600) and tokens, owned by uid 10001; api.listen 0.0.0.0:8080"

drun "${volume[@]}" -- check > "$work/check.log" 2>&1 || {
    cat "$work/check.log" >&2
    fail "fleetbot check"
}
grep -q 'agents authenticated' "$work/check.log" || fail "check printed no token self-test"
ok "fleetbot check: $(grep 'agents authenticated' "$work/check.log")"

# Editing the config inside the volume, as the README says: out with cat, edit, back in with cat
# through a throwaway container (the image has no editor; this keeps the file's owner and mode).
file_port=$(free_port)
env_port=$(free_port)
while [ "$env_port" = "$file_port" ]; do env_port=$(free_port); done
mode_before=$(stat -c %u:%g:%a "$data/config.yaml")
drun --entrypoint cat "${volume[@]}" -- /data/config.yaml > "$work/config.yaml"
sed -i "s/^  listen: 0\.0\.0\.0:8080\$/  listen: 0.0.0.0:$file_port/" "$work/config.yaml"
drun --entrypoint sh "${volume[@]}" -- -c 'cat > /data/config.yaml' < "$work/config.yaml"
grep -qx "  listen: 0.0.0.0:$file_port" "$data/config.yaml" || fail "the edit did not reach the volume"
[ "$(stat -c %u:%g:%a "$data/config.yaml")" = "$mode_before" ] || fail "the edit changed the file's owner or mode"
drun "${volume[@]}" -- check > "$work/check.log" 2>&1 || {
    cat "$work/check.log" >&2
    fail "fleetbot check after the edit"
}
ok "edited /data/config.yaml through a throwaway container (api.listen 0.0.0.0:$file_port), owner and mode kept, check passes"

# The image's default command, `run` with the bot, against the offline Bot API (the stand-in for
# Telegram the tests use; it is in the image) in a container of its own, on loopback: a user
# sends /whoami and the bot must answer. Its token is made up and never printed.
mkdir "$work/fake"
chown 10001:10001 "$work/fake"
bg fake "$work/fake.log" --entrypoint python -v "$work/fake:/out" -- -I -c '
import asyncio, os
from offline_botapi.server import OfflineBotAPI

async def main() -> None:
    api = OfflineBotAPI()
    async with api.serve("127.0.0.1", 0) as base_url:
        with open("/out/env.tmp", "w") as f:
            f.write(f"FLEETBOT_TELEGRAM__BASE_URL={base_url}\nFLEETBOT_TELEGRAM_TOKEN={api.token}\n")
        os.rename("/out/env.tmp", "/out/env")
        api.add_user(4242, "Ann")
        await api.send_text(4242, "/whoami")
        reply = await api.wait_for_message(4242, lambda m: "4242" in m.get("text", ""), timeout=90)
        with open("/out/answered", "w") as f:
            f.write(reply["text"].splitlines()[0])
        await asyncio.Event().wait()  # up until stopped: the bot keeps polling

asyncio.run(main())'
for _ in $(seq 1 100); do
    [ -s "$work/fake/env" ] && break
    kill -0 "$fake_pid" 2> /dev/null || break
    sleep 0.2
done
[ -s "$work/fake/env" ] || {
    cat "$work/fake.log" >&2
    fail "the offline Bot API did not start"
}
telegram=()
while IFS= read -r line; do telegram+=(-e "$line"); done < "$work/fake/env"
mapfile -d '' -t cmd < "$work/cmd"
bg server "$work/run.log" "${volume[@]}" "${telegram[@]}" -- "${cmd[@]}"
wait_healthz "$file_port"
ok "fleetbot ${cmd[*]} (the image's CMD, with the bot): /healthz answers 200 on $file_port, the port in the edited config"
for _ in $(seq 1 450); do
    [ -s "$work/fake/answered" ] && break
    kill -0 "$fake_pid" 2> /dev/null || break
    sleep 0.2
done
if [ ! -s "$work/fake/answered" ]; then
    # fake.log, not shown: the offline API's errors may quote its (made-up) token.
    cat "$work/run.log" >&2
    fail "the bot did not answer /whoami"
fi
ok "the bot polls the (offline) Bot API and answers /whoami: $(cat "$work/fake/answered")"
health_inside "${volume[@]}" "${telegram[@]}" || {
    cat "$work/health.log" >&2
    fail "the image's HEALTHCHECK failed with the server on $file_port"
}
ok "the image's HEALTHCHECK passes inside the container (port $file_port from config.yaml)"
stop_server_cleanly
stop fake > /dev/null 2>&1 || true

# FLEETBOT_API__LISTEN wins over the file, for the server and the health check alike.
listen_env=(-e "FLEETBOT_API__LISTEN=0.0.0.0:$env_port")
bg server "$work/run.log" "${volume[@]}" "${listen_env[@]}" -- run --no-bot
wait_healthz "$env_port"
! healthz "$file_port" || fail "something answers on $file_port too"
ok "fleetbot run --no-bot with FLEETBOT_API__LISTEN=0.0.0.0:$env_port: /healthz answers 200 there, nothing on $file_port"
health_inside "${volume[@]}" "${listen_env[@]}" || {
    cat "$work/health.log" >&2
    fail "the image's HEALTHCHECK failed with FLEETBOT_API__LISTEN on $env_port"
}
ok "the image's HEALTHCHECK passes inside the container with FLEETBOT_API__LISTEN=0.0.0.0:$env_port"
if health_inside "${volume[@]}"; then
    fail "the HEALTHCHECK passed with nothing listening where it looked (port $file_port)"
fi
ok "the image's HEALTHCHECK fails where nothing listens (without the override it checks $file_port)"
stop_server_cleanly

# A host folder of your own user instead: `--user "$(id -u):$(id -g)"`, and the files are yours
# to edit on the host (uid 4242 stands in for that user here).
mine=$work/mine
mkdir "$mine"
chown 4242:4242 "$mine"
as_me=(--user 4242:4242 -v "$mine:/data")
drun "${as_me[@]}" -- init /data > "$work/init.log" 2>&1 || {
    cat "$work/init.log" >&2
    fail "fleetbot init /data as --user 4242:4242"
}
[ "$(stat -c %u "$mine/config.yaml")" = 4242 ] || fail "config.yaml is not owned by the --user"
sed -i "s/^  listen: 0\.0\.0\.0:8080\$/  listen: 0.0.0.0:$file_port/" "$mine/config.yaml"
drun "${as_me[@]}" -- check > "$work/check.log" 2>&1 || {
    cat "$work/check.log" >&2
    fail "fleetbot check as --user 4242:4242"
}
ok "--user 4242:4242 with a host folder: init and check work, the files are that user's to edit"
say "the image ran for real in $(elapsed "$t")"

[ "${#containers[@]}" = 0 ] || fail "containers left behind: ${containers[*]}"
say "image $image ($size) in $store"
say "docker: $passed passed, 0 failed, in $(elapsed "$started")"
