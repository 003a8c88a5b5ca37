#!/usr/bin/env bash
# The benchmarks of mooc-lti (BENCHMARKS.md): launch throughput of returning learners against a
# no-op hyper server, first launches from a warm pool, warm rate against plain `docker run`, server
# memory, and a database of a million sessions.
#
#   bench/run.sh [options]
#
#   --parts LIST          comma-separated: throughput,first,warm,scale [all]      env BENCH_PARTS
#   --runs N              repetitions of each measurement [3]                      env BENCH_RUNS
#   --users N             returning learners in the throughput part [100]          env BENCH_USERS
#   --requests N          measured launches per throughput run [20000]             env BENCH_REQUESTS
#   --connections N       keep-alive connections of the load generator [64]        env BENCH_CONNECTIONS
#   --loadgen-threads N   worker threads of the load generator [1]                 env BENCH_LOADGEN_THREADS
#   --first N             new learners (and warm containers) per first-launch run [100]  env BENCH_FIRST
#   --warm N              containers warmed per warm-rate run [20]                 env BENCH_WARM
#   --parallel "A B"      `moocctl pool warm --parallel` values to try ["4 8 20"]  env BENCH_PARALLEL
#   --scale-sessions N    sessions in the scale database [1000000]                 env BENCH_SCALE_SESSIONS
#   --scale-users N       users in the scale database [100000]                     env BENCH_SCALE_USERS
#   --database URL        throughput part on this database instead of SQLite: `postgres` starts a
#                         throwaway PostgreSQL cluster on a loopback port; `postgres://…` uses an
#                         existing, empty database                                 env BENCH_DATABASE
#   --out DIR             where results go [target/bench/DATE]                     env BENCH_OUT
#   --keep                keep the temporary directory (configs, databases, logs)
#   env BENCH_PERF=1      after the throughput runs, profile the server under the same load: perf
#                         (on-CPU, perf-mooc-lti.txt) and strace -c (syscalls, strace-mooc-lti.txt)
#
# Builds release binaries first. Needs Docker, the test image (scripts/test-image.sh), curl and
# python3; hyperfine is used when installed. Every container and volume made here carries the label
# mooc-lti.test=bench-… and is removed at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PARTS="${BENCH_PARTS:-throughput,first,warm,scale}"
RUNS="${BENCH_RUNS:-3}"
USERS="${BENCH_USERS:-100}"
REQUESTS="${BENCH_REQUESTS:-20000}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
LOADGEN_THREADS="${BENCH_LOADGEN_THREADS:-1}"
FIRST="${BENCH_FIRST:-100}"
WARM_N="${BENCH_WARM:-20}"
PARALLEL="${BENCH_PARALLEL:-4 8 20}"
SCALE_SESSIONS="${BENCH_SCALE_SESSIONS:-1000000}"
SCALE_USERS="${BENCH_SCALE_USERS:-100000}"
DATABASE="${BENCH_DATABASE:-sqlite}"
OUT="${BENCH_OUT:-}"
KEEP=0

while [ $# -gt 0 ]; do
    case "$1" in
        --parts) PARTS="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --users) USERS="$2"; shift 2 ;;
        --requests) REQUESTS="$2"; shift 2 ;;
        --connections) CONNECTIONS="$2"; shift 2 ;;
        --loadgen-threads) LOADGEN_THREADS="$2"; shift 2 ;;
        --first) FIRST="$2"; shift 2 ;;
        --warm) WARM_N="$2"; shift 2 ;;
        --parallel) PARALLEL="$2"; shift 2 ;;
        --scale-sessions) SCALE_SESSIONS="$2"; shift 2 ;;
        --scale-users) SCALE_USERS="$2"; shift 2 ;;
        --database) DATABASE="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

IMAGE="${MOOC_TEST_IMAGE:-mooc-lti/notebook:test}"
KEY=bench
SECRET="bench-secret-0123456789abcdef"
# The URL launches are signed for; the server is told it is its public URL, requests go to its port.
PUBLIC_URL="http://lti.bench"
LABEL="bench-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
BIN="$ROOT/target/release"
[ -n "$OUT" ] || OUT="$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mooc-bench.XXXXXX")"
chmod 755 "$WORK"   # the throwaway PostgreSQL cluster runs as user postgres beneath it
SERVER_PID=""
NOOP_PID=""
PG_DIR=""

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 2; }
has_part() { case ",$PARTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
record() { printf '%s\n' "$1" >>"$RESULTS"; }

# ---- clean-up: our processes by pid, our Docker objects by label ----

remove_docker_objects() {
    local ids
    ids="$(docker ps -aq --filter "label=mooc-lti.test=$LABEL")"
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || true
    ids="$(docker volume ls -q --filter "label=mooc-lti.test=$LABEL")"
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker volume rm -f $ids >/dev/null 2>&1 || true
}

stop_pid() {
    local pid="$1"
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    [ "$rc" = 0 ] || log "failed (exit $rc); cleaning up"
    stop_pid "$SERVER_PID"
    stop_pid "$NOOP_PID"
    remove_docker_objects
    if [ -n "$PG_DIR" ]; then
        runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites and build ----

command -v docker >/dev/null || die "docker is missing"
command -v curl >/dev/null || die "curl is missing"
command -v python3 >/dev/null || die "python3 is missing"
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "test image $IMAGE is missing: run scripts/test-image.sh"

log "building release binaries"
cargo build --release --locked --bins -q
# Not --locked: the main crate, a path dependency, may have gained dependencies since the lock.
cargo build --release -q --manifest-path bench/loadgen/Cargo.toml --target-dir "$ROOT/target"

# ---- the machine ----

python3 - "$OUT/machine.json" <<'EOF'
import json, os, subprocess, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"
info = {
    "nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 2**20, 1),
    "kernel": os.uname().release,
    "docker": out("docker", "version", "--format", "{{.Server.Version}}"),
    "rustc": out("rustc", "--version"),
    # BENCH_COMMIT names the commit when the tree is an export (git archive), not a clone.
    "commit": os.environ.get("BENCH_COMMIT") or out("git", "rev-parse", "--short", "HEAD") or "?",
    "dirty": bool(out("git", "status", "--porcelain", "--untracked-files=no")),
}
json.dump(info, open(sys.argv[1], "w"))
print(json.dumps(info))
EOF

# ---- databases ----

# Starts a throwaway PostgreSQL cluster (trust auth, loopback only) and sets PG_PORT.
start_postgres() {
    local bindir
    bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    [ -x "$bindir/initdb" ] || die "PostgreSQL server binaries are missing (apt-get install postgresql)"
    PG_DIR="$WORK/pg"
    mkdir -p "$PG_DIR"
    chown postgres "$PG_DIR"
    PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    log "starting a throwaway PostgreSQL cluster on 127.0.0.1:$PG_PORT"
    runuser -u postgres -- "$bindir/initdb" -D "$PG_DIR/data" -A trust -U postgres >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    runuser -u postgres -- "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
        || { cat "$PG_DIR/server.log" >&2; die "PostgreSQL did not start"; }
    PG_BIN="$bindir"
}

# Prints the URL of a new, empty database named NAME for the throughput part.
new_database() {
    local name="$1"
    case "$DATABASE" in
        sqlite) echo "sqlite://$WORK/$name.db" ;;
        postgres)
            [ -n "$PG_DIR" ] || start_postgres >&2
            runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" "$name" >&2
            echo "postgres://postgres@127.0.0.1:$PG_PORT/$name" ;;
        postgres://*|postgresql://*) echo "$DATABASE" ;;
        *) die "--database: sqlite, postgres or a postgres:// URL, not $DATABASE" ;;
    esac
}

# ---- a deployment: config, moocctl, server ----

# write_config FILE DB_URL WARM MAX
write_config() {
    cat >"$1" <<EOF
server:
  listen: 127.0.0.1:0
  public_url: $PUBLIC_URL
  timestamp_window: 300s
  launch_wait: 60s
  shutdown_grace: 5s
database_url: $2
labels:
  mooc-lti.test: $LABEL
docker_hosts:
  - name: local
    endpoint: unix:///var/run/docker.sock
    public_host: 127.0.0.1
    capacity: 1000
pools:
  - name: default
    image: $IMAGE
    command: [jupyter-notebook, --ip=0.0.0.0, "--port={port}", --no-browser,
              --NotebookApp.port_retries=0, "--NotebookApp.base_url={base_url}"]
    warm: $3
    max: $4
    memory: 512m
    cpus: 1
    ready_timeout: 120s
EOF
}

moocctl() {
    local config="$1"; shift
    env -u MOOC_CONFIG -u MOOC_DATABASE_URL NO_COLOR=1 "$BIN/moocctl" --config "$config" --yes "$@" </dev/null
}

# start_server CONFIG LOG: starts mooc-lti, sets SERVER_PID and SERVER_ADDR.
start_server() {
    local config="$1" log="$2"
    env -u MOOC_CONFIG -u MOOC_LISTEN -u MOOC_DATABASE_URL RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
        "$BIN/mooc-lti" --config "$config" </dev/null >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_ADDR=""
    for _ in $(seq 1 300); do
        SERVER_ADDR="$(sed -n 's/.*listening on \([0-9.:]*\);.*/\1/p' "$log" | head -n 1)"
        [ -n "$SERVER_ADDR" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "mooc-lti exited"; }
        sleep 0.1
    done
    die "mooc-lti did not start: $(cat "$log")"
}

stop_server() { stop_pid "$SERVER_PID"; SERVER_PID=""; }

start_noop() {
    local log="$WORK/noop.log"
    "$BIN/noop-server" --listen 127.0.0.1:0 >"$log" 2>&1 &
    NOOP_PID=$!
    NOOP_ADDR=""
    for _ in $(seq 1 100); do
        NOOP_ADDR="$(sed -n 's/^listening on //p' "$log" | head -n 1)"
        [ -n "$NOOP_ADDR" ] && return 0
        sleep 0.05
    done
    die "noop-server did not start"
}

# rss_kib PID FIELD: VmRSS or VmHWM of a process, KiB.
rss_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# cpu_ticks PID: user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# machine_ticks: busy CPU time of the whole machine so far (all but idle and iowait), in clock ticks.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
CLK_TCK="$(getconf CLK_TCK)"
NPROC="$(nproc)"

# busy_pct: how busy the machine is over one second, percent of all CPUs.
busy_pct() {
    local a b
    a="$(machine_ticks)"; sleep 1; b="$(machine_ticks)"
    echo $(( (b - a) * 100 / (CLK_TCK * NPROC) ))
}

# wait_quiet: this machine may be shared (other builds and tests): waits up to BENCH_QUIET_SECS [180]
# for it to be under BENCH_QUIET_PCT [25] percent busy before a measurement. Prints the last sample.
wait_quiet() {
    local limit="${BENCH_QUIET_PCT:-25}" deadline busy
    deadline=$(( $(date +%s) + ${BENCH_QUIET_SECS:-180} ))
    busy="$(busy_pct)"
    while [ "$busy" -gt "$limit" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        log "machine ${busy}% busy with other work; waiting for it to settle"
        sleep 4
        busy="$(busy_pct)"
    done
    echo "$busy"
}

# measured PID LOADGEN_ARGS…: runs loadgen and adds to its report the CPU seconds PID used meanwhile,
# the rest of the machine used (anything but PID and loadgen: other people's work) and how busy the
# machine was just before.
measured() {
    local pid="$1" quiet before report after m_before m_after; shift
    quiet="$(wait_quiet)"
    before="$(cpu_ticks "$pid")"
    m_before="$(machine_ticks)"
    report="$(loadgen "$@")"
    after="$(cpu_ticks "$pid")"
    m_after="$(machine_ticks)"
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])
before, after, m_before, m_after, hz, quiet = map(int, sys.argv[2:])
r["server_cpu_secs"] = round((after - before) / hz, 2)
others = (m_after - m_before) / hz - r["server_cpu_secs"] - (r.get("loadgen_cpu_secs") or 0)
r["other_cpu_secs"] = round(max(0.0, others), 2)
r["busy_pct_before"] = quiet
print(json.dumps(r))' "$report" "$before" "$after" "$m_before" "$m_after" "$CLK_TCK" "$quiet"
}

# loadgen ADDR NAME [loadgen options…]: prints the JSON report.
loadgen() {
    local addr="$1" name="$2"; shift 2
    "$BIN/loadgen" --target "http://$addr/lti/launch" --sign-url "$PUBLIC_URL/lti/launch" \
        --key "$KEY" --secret "$SECRET" --threads "$LOADGEN_THREADS" --name "$name" "$@"
}

json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# warm_pool CONFIG PARALLEL: `moocctl pool warm`, failing unless the target was reached.
warm_pool() {
    moocctl "$1" --quiet pool warm --parallel "$2" >"$WORK/warm.out" 2>&1 \
        || { cat "$WORK/warm.out" >&2; die "moocctl pool warm failed"; }
}

# first_launch_all ADDR PREFIX N: launches N new learners once each; all must get 302.
first_launch_all() {
    local report
    report="$(loadgen "$1" "setup" --user-prefix "$2" --users "$3" --requests "$3" --connections "${4:-16}")"
    [ "$(json_field "$report" count_302)" = "$3" ] || die "set-up launches: $report"
}

# ---- part 1 (and 4): launch throughput of returning learners, memory ----

part_throughput() {
    log "throughput: $USERS returning learners, $REQUESTS launches x $RUNS runs, $CONNECTIONS connections, database $DATABASE"
    local dir="$WORK/throughput" db config report idle_rss
    mkdir -p "$dir"
    db="$(new_database bench_throughput)"
    config="$dir/pool.yaml"
    write_config "$config" "$db" "$USERS" $((USERS + 10))
    moocctl "$config" --quiet consumer add "$KEY" --secret "$SECRET" >/dev/null
    log "warming $USERS containers for the returning learners"
    warm_pool "$config" 8
    # The server runs with warm 0, so that no refill competes with the measured launches.
    write_config "$config" "$db" 0 $((USERS + 10))
    start_server "$config" "$dir/server.log"
    sleep 3
    idle_rss="$(rss_kib "$SERVER_PID" VmRSS)"
    record "{\"part\":\"memory\",\"name\":\"idle\",\"database\":\"${DATABASE%%:*}\",\"rss_kib\":$idle_rss}"
    log "server idle RSS ${idle_rss} KiB; first launch of each learner"
    first_launch_all "$SERVER_ADDR" "ret-" "$USERS"
    start_noop
    local warmup=$((REQUESTS / 10))
    # 1% more requests replay a warm-up launch's body, whose nonce is spent: every one must get 401.
    local replays=$((REQUESTS / 100))
    for run in $(seq 1 "$RUNS"); do
        report="$(measured "$NOOP_PID" "$NOOP_ADDR" noop --user-prefix ret- --users "$USERS" --requests "$REQUESTS" --warmup "$warmup" --replays "$replays" --connections "$CONNECTIONS")"
        record "{\"part\":\"throughput\",\"target\":\"noop\",\"run\":$run,\"database\":\"${DATABASE%%:*}\",\"report\":$report}"
        log "run $run noop:     $(json_field "$report" rate)/s p50 $(json_field "$report" p50_ms) ms p99 $(json_field "$report" p99_ms) ms"
        report="$(measured "$SERVER_PID" "$SERVER_ADDR" mooc-lti --user-prefix ret- --users "$USERS" --requests "$REQUESTS" --warmup "$warmup" --replays "$replays" --connections "$CONNECTIONS")"
        record "{\"part\":\"throughput\",\"target\":\"mooc-lti\",\"run\":$run,\"database\":\"${DATABASE%%:*}\",\"report\":$report}"
        log "run $run mooc-lti: $(json_field "$report" rate)/s p50 $(json_field "$report" p50_ms) ms p99 $(json_field "$report" p99_ms) ms, $(json_field "$report" count_302) x 302 of $REQUESTS, $(json_field "$report" replays_refused) of $replays replays refused"
    done
    # The same launches one at a time: the service time of one launch without contention.
    report="$(measured "$SERVER_PID" "$SERVER_ADDR" mooc-lti-serial --user-prefix ret- --users "$USERS" --requests 2000 --warmup 200 --connections 1)"
    record "{\"part\":\"serial\",\"database\":\"${DATABASE%%:*}\",\"report\":$report}"
    log "one connection: $(json_field "$report" rate)/s p50 $(json_field "$report" p50_ms) ms p99 $(json_field "$report" p99_ms) ms"
    record "{\"part\":\"memory\",\"name\":\"after-throughput\",\"database\":\"${DATABASE%%:*}\",\"rss_kib\":$(rss_kib "$SERVER_PID" VmRSS),\"hwm_kib\":$(rss_kib "$SERVER_PID" VmHWM)}"
    if [ -n "${BENCH_PERF:-}" ] && command -v perf >/dev/null; then
        log "profiling one more run with perf (BENCH_PERF set)"
        perf record -F 999 -p "$SERVER_PID" -o "$OUT/perf-mooc-lti.data" -- sleep 8 >/dev/null 2>&1 &
        local perf_pid=$!
        loadgen "$SERVER_ADDR" perf --user-prefix ret- --users "$USERS" --requests "$REQUESTS" --connections "$CONNECTIONS" >/dev/null
        wait "$perf_pid" || true
        for sort in comm dso dso,symbol; do
            echo "## perf report --sort $sort"
            perf report -i "$OUT/perf-mooc-lti.data" --no-children --sort "$sort" --percent-limit 0.5 --stdio 2>/dev/null \
                | grep -v '^#' | grep -v '^$' | sed 's/  */ /g; s/ *- *- *$//' || true
        done >"$OUT/perf-mooc-lti.txt"
        if command -v strace >/dev/null; then
            # Off-CPU time (SQLite's busy handler sleeps, futex waits) does not show in perf's samples.
            timeout -s INT 6 strace -f -c -p "$SERVER_PID" -o "$OUT/strace-mooc-lti.txt" 2>/dev/null &
            local strace_pid=$!
            sleep 1
            loadgen "$SERVER_ADDR" strace --user-prefix ret- --users "$USERS" --requests 5000 --connections "$CONNECTIONS" >/dev/null
            wait "$strace_pid" || true
        fi
    fi
    stop_pid "$NOOP_PID"; NOOP_PID=""
    stop_server
    cp "$dir/server.log" "$OUT/throughput-server.log"
    remove_docker_objects
}

# ---- part 2: first launches, claiming from a warm pool ----

part_first() {
    log "first launches: $FIRST new learners per run from a warm pool of $FIRST, $RUNS runs"
    local run dir config report
    for run in $(seq 1 "$RUNS"); do
        dir="$WORK/first-$run"
        mkdir -p "$dir"
        config="$dir/pool.yaml"
        write_config "$config" "sqlite://$dir/mooc.db" "$FIRST" $((FIRST + 10))
        moocctl "$config" --quiet consumer add "$KEY" --secret "$SECRET" >/dev/null
        log "run $run: warming $FIRST containers"
        warm_pool "$config" 8
        write_config "$config" "sqlite://$dir/mooc.db" 0 $((FIRST + 10))
        start_server "$config" "$dir/server.log"
        sleep 3
        report="$(measured "$SERVER_PID" "$SERVER_ADDR" first --user-prefix "first$run-" --users "$FIRST" --requests "$FIRST" --connections "$CONNECTIONS")"
        record "{\"part\":\"first\",\"run\":$run,\"report\":$report}"
        log "run $run: $(json_field "$report" rate)/s p50 $(json_field "$report" p50_ms) ms p99 $(json_field "$report" p99_ms) ms, $(json_field "$report" count_302) x 302 of $FIRST"
        stop_server
        remove_docker_objects
    done
}

# ---- part 3: warm rate against plain docker run ----

# The same image and command as the pool, N at once, port published on 127.0.0.1, until every
# Jupyter answers GET {base_url}api. Prints the seconds taken.
docker_run_baseline() {
    local n="$1" dir="$2"
    mkdir -p "$dir"
    local start end i
    start="$(date +%s.%N)"
    for i in $(seq 1 "$n"); do
        (
            name="bench-plain-$LABEL-$i"
            docker run -d --name "$name" --label "mooc-lti.test=$LABEL" \
                -p 127.0.0.1::8888 -e "JUPYTER_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
                "$IMAGE" jupyter-notebook --ip=0.0.0.0 --port=8888 --no-browser \
                --NotebookApp.port_retries=0 "--NotebookApp.base_url=/user/$name/" >/dev/null
            port="$(docker port "$name" 8888/tcp | head -n 1 | sed 's/.*://')"
            # Polled like the pool's readiness check: every 25 ms at first, backing off to 250 ms.
            for delay in 0.025 0.05 0.1 0.2 $(printf "0.25 %.0s" $(seq 1 480)); do
                if curl -fs -o /dev/null -m 2 "http://127.0.0.1:$port/user/$name/api" 2>/dev/null; then
                    echo ok >"$dir/$i"
                    exit 0
                fi
                sleep "$delay"
            done
        ) &
    done
    wait
    end="$(date +%s.%N)"
    [ "$(ls "$dir" | wc -l)" = "$n" ] || die "docker run baseline: not every notebook answered"
    python3 -c "print(round($end - $start, 3))"
}

part_warm() {
    log "warm rate: 0 -> $WARM_N ready, $RUNS runs; moocctl --parallel $PARALLEL against docker run"
    local run dir config secs p ready
    local busy
    for run in $(seq 1 "$RUNS"); do
        busy="$(wait_quiet)"
        secs="$(docker_run_baseline "$WARM_N" "$WORK/plain-$run")"
        record "{\"part\":\"warm\",\"target\":\"docker-run\",\"run\":$run,\"n\":$WARM_N,\"secs\":$secs,\"busy_pct_before\":$busy}"
        log "run $run docker run x $WARM_N: ${secs} s"
        remove_docker_objects
        for p in $PARALLEL; do
            dir="$WORK/warm-$run-$p"
            mkdir -p "$dir"
            config="$dir/pool.yaml"
            write_config "$config" "sqlite://$dir/mooc.db" "$WARM_N" $((WARM_N * 2))
            # Opens and migrates the database outside the timing (exit 1: no consumers, as expected).
            moocctl "$config" --quiet consumer list >/dev/null || [ $? = 1 ]
            local start end
            busy="$(wait_quiet)"
            start="$(date +%s.%N)"
            warm_pool "$config" "$p"
            end="$(date +%s.%N)"
            secs="$(python3 -c "print(round($end - $start, 3))")"
            ready="$(moocctl "$config" --json pool status | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ready"])')"
            [ "$ready" = "$WARM_N" ] || die "pool warm: $ready of $WARM_N ready"
            record "{\"part\":\"warm\",\"target\":\"moocctl\",\"parallel\":$p,\"run\":$run,\"n\":$WARM_N,\"secs\":$secs,\"busy_pct_before\":$busy}"
            log "run $run moocctl pool warm --parallel $p: ${secs} s"
            remove_docker_objects
        done
    done
}

# ---- part 5: a million sessions ----

# Fills the schema the binaries made with SCALE_USERS users (each with a claimed volume and a removed
# container: history), SCALE_SESSIONS launches over 90 days, and one event per user.
fill_scale_database() {
    local file="$1"
    sqlite3 "$file" >/dev/null <<EOF
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $SCALE_USERS)
INSERT INTO users (consumer_key, user_id, name, email, first_seen, last_seen)
SELECT '$KEY', printf('scale-%06d', i), 'Learner ' || i, 'learner' || i || '@example.edu',
       strftime('%s','now') - 7776000 + i * 7, strftime('%s','now') - (i % 86400)
FROM n;
INSERT INTO volumes (name, pool, host, user_id, created_at, claimed_at)
SELECT printf('mooc-default-s%06d-home', id), 'default', 'local', id, first_seen, first_seen FROM users;
INSERT INTO containers (name, pool, host, docker_id, port, token, volume, state, user_id,
                        created_at, updated_at, ready_at, assigned_at, last_activity, error)
SELECT printf('mooc-default-s%06d', id), 'default', 'local', NULL, NULL, lower(hex(randomblob(24))),
       printf('mooc-default-s%06d-home', id), 'removed', id, first_seen, last_seen, first_seen,
       first_seen, last_seen, NULL
FROM users;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $SCALE_SESSIONS)
INSERT INTO sessions (at, user_id, consumer_key, context_id, resource_link_id, roles, remote_addr,
                      pool, outcome, container_id)
SELECT strftime('%s','now') - 7776000 + i * (7776000 / $SCALE_SESSIONS), 1 + (i * 7919) % $SCALE_USERS,
       '$KEY', 'ondemand~course-' || (i % 20), 'lab-' || (i % 12), 'Learner', '203.0.113.' || (i % 250),
       'default', CASE WHEN i % 10 = 0 THEN 'claimed' ELSE 'returning' END, 1 + (i * 7919) % $SCALE_USERS
FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $SCALE_USERS)
INSERT INTO events (at, level, kind, actor, message)
SELECT strftime('%s','now') - 7776000 + i * 77, 'info', 'spawn', 'server', printf('mooc-default-s%06d on local', i)
FROM n;
COMMIT;
ANALYZE;
EOF
}

# time_command NAME COMMAND…: hyperfine when installed, else 20 timed runs; records median/min/max ms.
time_command() {
    local name="$1"; shift
    local json="$WORK/hf-${name//[^a-z0-9]/-}.json"
    wait_quiet >/dev/null
    if command -v hyperfine >/dev/null; then
        hyperfine -N --warmup 3 --runs 20 --export-json "$json" "$(printf '%q ' "$@")" >/dev/null 2>&1 \
            || hyperfine --warmup 3 --runs 20 --export-json "$json" "$(printf '%q ' "$@")" >/dev/null
        python3 - "$json" "$name" >>"$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(json.dumps({"part": "scale", "name": sys.argv[2], "tool": "hyperfine", "runs": len(r["times"]),
                  "median_ms": round(r["median"] * 1000, 2), "mean_ms": round(r["mean"] * 1000, 2),
                  "min_ms": round(r["min"] * 1000, 2), "max_ms": round(r["max"] * 1000, 2)}))
EOF
    else
        local times=() s e
        for i in $(seq 1 23); do
            s="$(date +%s%N)"; "$@" >/dev/null 2>&1; e="$(date +%s%N)"
            [ "$i" -le 3 ] || times+=("$(( (e - s) / 1000 ))")
        done
        python3 - "$name" "${times[@]}" >>"$RESULTS" <<'EOF'
import json, statistics, sys
t = [int(x) / 1000 for x in sys.argv[2:]]
print(json.dumps({"part": "scale", "name": sys.argv[1], "tool": "date", "runs": len(t),
                  "median_ms": round(statistics.median(t), 2), "mean_ms": round(statistics.mean(t), 2),
                  "min_ms": round(min(t), 2), "max_ms": round(max(t), 2)}))
EOF
    fi
    log "$name: $(tail -n 1 "$RESULTS")"
}

part_scale() {
    command -v sqlite3 >/dev/null || die "sqlite3 is missing (apt-get install sqlite3)"
    log "scale: $SCALE_SESSIONS sessions, $SCALE_USERS users"
    local dir="$WORK/scale" config file started report
    mkdir -p "$dir"
    file="$dir/mooc.db"
    config="$dir/pool.yaml"
    write_config "$config" "sqlite://$file" 2 10
    moocctl "$config" --quiet consumer add "$KEY" --secret "$SECRET" >/dev/null
    started="$(date +%s)"
    fill_scale_database "$file"
    local counts
    counts="$(sqlite3 -separator , "$file" 'SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM users), (SELECT count(*) FROM containers)')"
    record "{\"part\":\"scale-db\",\"sessions\":${counts%%,*},\"users\":$(echo "$counts" | cut -d, -f2),\"containers\":${counts##*,},\"fill_secs\":$(( $(date +%s) - started )),\"bytes\":$(stat -c %s "$file")}"
    log "filled in $(( $(date +%s) - started )) s: $counts sessions, users, containers; $(du -h "$file" | cut -f1)"
    # Two warm containers: one for the measured learner, one spare.
    warm_pool "$config" 2
    write_config "$config" "sqlite://$file" 0 10
    if moocctl "$config" sessions list --help >/dev/null 2>&1; then
        time_command "sessions list --limit 50" "$BIN/moocctl" --config "$config" sessions list --limit 50
        time_command "sessions list --limit 50 --user scale-000777" "$BIN/moocctl" --config "$config" sessions list --limit 50 --user scale-000777
    else
        record '{"part":"scale","name":"sessions list --limit 50","skipped":"moocctl has no sessions command"}'
        log "moocctl sessions is missing: skipped"
    fi
    time_command "pool status" "$BIN/moocctl" --config "$config" pool status
    start_server "$config" "$dir/server.log"
    sleep 3
    first_launch_all "$SERVER_ADDR" "scale-bench-" 1 1
    for run in $(seq 1 "$RUNS"); do
        report="$(measured "$SERVER_PID" "$SERVER_ADDR" scale-launch --user-prefix scale-bench- --users 1 --requests 200 --warmup 10 --connections 1)"
        record "{\"part\":\"scale\",\"name\":\"launch\",\"run\":$run,\"report\":$report}"
        log "run $run launch on the big database: p50 $(json_field "$report" p50_ms) ms p99 $(json_field "$report" p99_ms) ms max $(json_field "$report" max_ms) ms"
    done
    stop_server
    remove_docker_objects
}

has_part throughput && part_throughput
has_part first && part_first
has_part warm && part_warm
has_part scale && part_scale

python3 bench/summarize.py "$OUT/machine.json" "$RESULTS" | tee "$OUT/summary.md"
log "results in $OUT"
