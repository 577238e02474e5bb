#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, in a folder of its own.
#
#   scripts/pg.sh start DIR [--durable]   initdb + start; prints the postgresql:// URL
#   scripts/pg.sh url DIR                 the URL again
#   scripts/pg.sh env DIR                 `export` lines: FLEETBOT_PG_URL, PGPASSFILE
#   scripts/pg.sh stop DIR                stop the server and remove DIR
#
# The server listens on 127.0.0.1 (a free port) and on a unix socket in DIR/run. It refuses to
# run as root, so as root the cluster belongs to a system user, fleetbot-pg (created if missing);
# as anyone else, to that user. Every connection authenticates with scram-sha-256: the superuser
# `fleetbot`, its password in DIR/password (and DIR/pgpass, libpq's format, for PGPASSFILE), both
# mode 0600 and never in the URL. Trust would let any local user of a shared runner in.
#
# By default fsync and full_page_writes are off while synchronous_commit stays on: a commit still
# reaches the kernel before it is acknowledged, so it survives a SIGKILL of postgres or of
# fleetbot (the guarantee today's SQLite store gives with synchronous=NORMAL), and only an OS
# crash could lose it, which a cluster deleted after the run never meets. --durable turns both
# back on, for a test that wants the production setting's cost.
#
# The server binaries: PG_BIN, else Debian's /usr/lib/postgresql/15/bin (package postgresql-15).
set -euo pipefail

PG_USER=fleetbot-pg  # the system user that owns the cluster when we run as root
DB_USER=fleetbot
DB_NAME=fleetbot
MARK=.fleetbot-pg  # only a folder holding this file is ever removed by `stop`

die() {
    printf 'scripts/pg.sh: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '4,7p' "$0" | sed 's/^# //' >&2
    exit 2
}

find_bin() {  # [DIR of a cluster: the binaries it was started with]
    local dir=${PG_BIN:-/usr/lib/postgresql/15/bin} tool missing=()
    if [ $# -gt 0 ] && [ -f "$1/bindir" ]; then
        dir=$(cat "$1/bindir")
    fi
    for tool in initdb pg_ctl postgres createdb; do
        [ -x "$dir/$tool" ] || missing+=("$dir/$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        die "no PostgreSQL server binaries: missing ${missing[*]}. Install Debian's" \
            "postgresql-15 (apt-get install -y postgresql-15), or set PG_BIN to a folder" \
            "holding initdb, pg_ctl, postgres and createdb (pip install pgserver ships one:" \
            "<venv>/lib/python3.*/site-packages/pgserver/pginstall/bin)."
    fi
    BIN=$dir
}

# Run a command as the cluster's owner: fleetbot-pg when we are root, ourselves otherwise.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    getent passwd "$PG_USER" > /dev/null && return 0
    # Another start may create it at the same moment: only a user still missing is an error.
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$PG_USER" 2> /dev/null ||
        getent passwd "$PG_USER" > /dev/null ||
        die "could not create the system user $PG_USER with useradd (package passwd); create it" \
            "yourself (useradd --system $PG_USER) or run as an unprivileged user."
}

# Hand a path we created to the cluster's owner.
give() {
    if [ "$(id -u)" -eq 0 ]; then
        chown "$PG_USER:$PG_USER" "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

micros() {
    local t=$EPOCHREALTIME
    echo "${t/./}"
}

url_of() {
    local port
    port=$(cat "$1/port")
    echo "postgresql://$DB_USER@127.0.0.1:$port/$DB_NAME"
}

write_conf() {  # DIR PORT DURABLE
    local sync=off
    [ "$3" = 1 ] && sync=on
    cat > "$1/data/fleetbot.conf" << EOF
# written by scripts/pg.sh
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$1/run'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
max_connections = 200
fsync = $sync
full_page_writes = $sync
synchronous_commit = on
timezone = 'UTC'
log_timezone = 'UTC'
logging_collector = off
log_min_messages = warning
EOF
    give "$1/data/fleetbot.conf"
    echo "$2" > "$1/port"
}

start() {
    local dir=$1 durable=$2
    find_bin
    if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2> /dev/null)" ]; then
        die "$dir is not empty; stop the cluster in it (scripts/pg.sh stop $dir) or pick a new folder."
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local t0 t1 t2
    t0=$(micros)
    ensure_user
    chmod 0755 "$dir"
    touch "$dir/$MARK"
    mkdir -m 0700 "$dir/data" "$dir/run"
    touch "$dir/postgres.log"
    give "$dir/data" "$dir/run" "$dir/postgres.log"
    if ! as_owner test -w "$dir/data"; then
        die "$PG_USER cannot reach $dir/data: a folder above $dir is not searchable by other" \
            "users. Pick a folder under /tmp, or chmod o+x the folders above it."
    fi

    local password
    password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
    (umask 077 && echo "$password" > "$dir/password")
    # initdb reads the password as the cluster's owner, from a file only it can read.
    (umask 077 && echo "$password" > "$dir/run/pwfile")
    give "$dir/run/pwfile"
    local nosync=(--no-sync)
    [ "$durable" = 1 ] && nosync=()
    if ! as_owner "$BIN/initdb" -D "$dir/data" -U "$DB_USER" --pwfile="$dir/run/pwfile" \
        --auth=scram-sha-256 -E UTF8 --locale=C "${nosync[@]}" > "$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        die "initdb failed (above); $dir is left for a look, remove it with scripts/pg.sh stop $dir."
    fi
    rm -f "$dir/run/pwfile"
    echo "$BIN" > "$dir/bindir"
    echo "include 'fleetbot.conf'" >> "$dir/data/postgresql.conf"
    t1=$(micros)

    # A free port can be taken between asking and binding: try another one a few times.
    local port started=0
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        write_conf "$dir" "$port" "$durable"
        if as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start > /dev/null; then
            started=1
            break
        fi
        grep -q "could not bind\|Address already in use" "$dir/postgres.log" || break
    done
    if [ "$started" != 1 ]; then
        tail -n 20 "$dir/postgres.log" >&2
        die "the server did not start (its log above, in $dir/postgres.log); remove the folder" \
            "with scripts/pg.sh stop $dir."
    fi
    (umask 077 && printf '127.0.0.1:%s:*:%s:%s\n' "$port" "$DB_USER" "$password" > "$dir/pgpass")
    # pg_ctl -w returned once the server answers; createdb is the first real login.
    PGPASSFILE=$dir/pgpass "$BIN/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" -w "$DB_NAME" ||
        die "the server started but refused a login on 127.0.0.1:$port; see $dir/postgres.log."
    t2=$(micros)
    local version
    version=$("$BIN/postgres" --version)
    printf '%s in %s (initdb %d ms, start %d ms, fsync %s); password in %s/password\n' \
        "$version" "$dir" $(((t1 - t0) / 1000)) $(((t2 - t1) / 1000)) \
        "$([ "$durable" = 1 ] && echo on || echo off)" "$dir" >&2
    url_of "$dir"
}

stop() {
    local dir=$1
    if [ ! -e "$dir" ]; then
        echo "scripts/pg.sh: $dir does not exist; nothing to stop." >&2
        return 0
    fi
    [ -e "$dir/$MARK" ] || die "$dir was not made by scripts/pg.sh start (no $MARK in it); not touching it."
    if [ -f "$dir/data/postmaster.pid" ]; then
        find_bin "$dir"
        as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop > /dev/null 2>&1 ||
            as_owner "$BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop > /dev/null 2>&1 ||
            true
        if [ -f "$dir/data/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$dir/data" status > /dev/null 2>&1; then
            die "the server in $dir would not stop; see $dir/postgres.log. The folder was kept."
        fi
    fi
    rm -rf "$dir"
}

[ $# -ge 2 ] || usage
command=$1 dir=$2
shift 2
case $command in
    start)
        durable=0
        for arg in "$@"; do
            case $arg in
                --durable) durable=1 ;;
                *) usage ;;
            esac
        done
        start "$dir" "$durable"
        ;;
    stop) stop "$dir" ;;
    url)
        [ -f "$dir/port" ] || die "$dir holds no cluster started by scripts/pg.sh start."
        url_of "$dir"
        ;;
    env)
        [ -f "$dir/port" ] || die "$dir holds no cluster started by scripts/pg.sh start."
        dir=$(cd "$dir" && pwd)
        printf 'export FLEETBOT_PG_URL=%q\nexport PGPASSFILE=%q\n' "$(url_of "$dir")" "$dir/pgpass"
        ;;
    *) usage ;;
esac
