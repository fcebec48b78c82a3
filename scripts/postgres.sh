#!/usr/bin/env bash
# Starts a private PostgreSQL cluster for the tests and prints the URL of its database.
# Installs PostgreSQL with apt when it is missing. The cluster lives in $1 (created if needed),
# listens on 127.0.0.1 only (port $2, or the next free one when another program holds it),
# trusts local connections, and is left running (a second call reuses it). Exits non-zero with
# a message when PostgreSQL cannot be started.
set -euo pipefail
# A third argument `scratch` turns off fsync: for test data nobody needs after a crash.
dir=${1:?usage: postgres.sh DIR PORT [scratch]}
port=${2:?usage: postgres.sh DIR PORT [scratch]}
settings=""
if [ "${3:-}" = "scratch" ]; then
    settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "PostgreSQL not found: installing it with apt" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

# PostgreSQL refuses to run as root: the cluster belongs to the postgres user then.
run() {
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
if [ ! -f "$dir/data/PG_VERSION" ]; then
    run "'$bin/initdb' -D '$dir/data' -A trust -U postgres" > "$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
fi
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if run "'$bin/pg_ctl' -D '$dir/data' status" > /dev/null 2>&1 && [ -f "$dir/port" ]; then
    port=$(cat "$dir/port")
else
    tries=0
    while port_busy "$port"; do
        port=$((port + 1))
        tries=$((tries + 1))
        if [ "$tries" -gt 50 ]; then
            echo "no free port for PostgreSQL near ${2}" >&2
            exit 1
        fi
    done
    run "'$bin/pg_ctl' -D '$dir/data' -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 $settings\" -l '$dir/server.log' -w start" > /dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" > "$dir/port"
fi
echo "postgres://postgres@127.0.0.1:$port/postgres"
