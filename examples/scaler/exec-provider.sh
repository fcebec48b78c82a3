#!/bin/sh
# An `exec` provider for `baton scaler`: each machine is a local `baton runner` process.
# A real provider would call a cloud's CLI or API in the same three verbs:
#
#   exec-provider.sh create            request as JSON on stdin and in BATON_* variables;
#                                      prints {"id": "..."}
#   exec-provider.sh terminate ID      stops and removes the machine; unknown ids succeed
#   exec-provider.sh list POOL         prints [{"id": "...", "name": "...", "pool": "..."}, ...]
#
# Settings: BATON_PROGRAM (default: baton on PATH), BATON_EXEC_STATE (default:
# /tmp/baton-exec-provider), where each machine keeps its pid, pool, logs and directories.
set -eu

program=${BATON_PROGRAM:-baton}
state=${BATON_EXEC_STATE:-/tmp/baton-exec-provider}
mkdir -p "$state"

case "${1:-}" in
create)
    cat > /dev/null # the same request is in the BATON_* variables
    name=$BATON_INSTANCE_NAME
    dir="$state/$name"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        printf '{"id": "%s"}\n' "$name"
        exit 0
    fi
    mkdir -p "$dir"
    printf '%s\n' "$BATON_POOL" > "$dir/pool"
    ephemeral=""
    if [ "$BATON_EPHEMERAL" = "true" ]; then ephemeral="--ephemeral"; fi
    # BATON_RUNNER_JIT is already in the environment: the runner reads it from there.
    # shellcheck disable=SC2086
    nohup "$program" runner --server "$BATON_SERVER" --name "$name" --capacity "$BATON_CAPACITY" $ephemeral \
        --work-dir "$dir/work" --state-dir "$dir/state" < /dev/null > "$dir/runner.log" 2>&1 &
    printf '%s\n' "$!" > "$dir/pid"
    printf '{"id": "%s"}\n' "$name"
    ;;
terminate)
    id=${2:?terminate needs an id}
    dir="$state/$id"
    if [ -f "$dir/pid" ]; then
        pid=$(cat "$dir/pid")
        kill -TERM "$pid" 2>/dev/null || true
        tries=0
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 100 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
list)
    pool=${2:?list needs a pool}
    printf '['
    separator=""
    for dir in "$state"/*; do
        [ -f "$dir/pid" ] || continue
        [ "$(cat "$dir/pool")" = "$pool" ] || continue
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || continue
        name=$(basename "$dir")
        printf '%s{"id": "%s", "name": "%s", "pool": "%s"}' "$separator" "$name" "$name" "$pool"
        separator=", "
    done
    printf ']\n'
    ;;
*)
    echo "usage: $0 create | terminate ID | list POOL" >&2
    exit 2
    ;;
esac
