#!/usr/bin/env bash
# Starts a private PostgreSQL cluster for the tests and prints the URL of its database.
# Installs PostgreSQL with apt when it is missing. The cluster lives in $1 (created if needed),
# listens on 127.0.0.1 only (port $2, or the next free one when another program holds it),
# trusts local connections, accepts TLS (certificates below), and is left running (a second
# call reuses it). Exits non-zero with a message when PostgreSQL cannot be started.
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
# TLS: a private CA and a server certificate that names localhost (only), so tests can check
# both a name that matches (localhost) and one that does not (127.0.0.1), and a client
# certificate. Tests find them in $dir/tls (ca.crt, client.crt, client.key). Made once per cluster directory, with openssl (which PostgreSQL's Debian
# packages depend on).
tls="$dir/tls"
if [ ! -f "$tls/client.key" ]; then
    rm -rf "$tls" "$tls.new"
    if ! command -v openssl > /dev/null 2>&1; then
        echo "openssl not found: installing it with apt" >&2
        if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssl >&2
    fi
    mkdir -p "$tls.new"
    (
        cd "$tls.new"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/CN=Baton test CA" -keyout ca.key -out ca.crt
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=localhost" -keyout server.key -out server.csr
        printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.crt
        # A client certificate, which the server asks for (and records) but does not require.
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=baton-test-client" -keyout client.key -out client.csr
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' > client.ext
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile client.ext -out client.crt
        chmod 600 server.key ca.key client.key
        chmod 644 ca.crt server.crt client.crt
    ) > "$dir/tls.log" 2>&1 || { cat "$dir/tls.log" >&2; exit 1; }
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$tls.new"; fi
    mv "$tls.new" "$tls"
fi
settings="$settings -c ssl=on -c ssl_cert_file='$tls/server.crt' -c ssl_key_file='$tls/server.key' -c ssl_ca_file='$tls/ca.crt'"

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A cluster left running with other settings (by an older version of this script) is restarted.
if run "'$bin/pg_ctl' -D '$dir/data' status" > /dev/null 2>&1 && [ "$(cat "$dir/settings" 2>/dev/null)" != "$settings" ]; then
    run "'$bin/pg_ctl' -D '$dir/data' -m fast -w stop" > /dev/null
fi
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
    printf '%s' "$settings" > "$dir/settings"
fi
echo "postgres://postgres@127.0.0.1:$port/postgres"
