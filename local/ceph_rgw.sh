#!/usr/bin/env bash
# A throw-away single-node Ceph (Pacific 16.2.x, Debian 12's packages) with a RADOS Gateway
# S3 endpoint on 127.0.0.1, for running the storage tests and the service against a real
# Ceph RGW. 1 mon, 1 OSD on memstore (objects live in the OSD's RAM, nothing on a disk),
# no mgr, 1 radosgw, auth none, no systemd. About 1.5 s from nothing to a working endpoint.
# Every file (conf, mon store, logs, pid files, sockets) lives under $CEPH_DIR.
#
# Usage: local/ceph_rgw.sh install        apt-install the packages if radosgw is missing (root)
#        local/ceph_rgw.sh up             start a fresh cluster in $CEPH_DIR; prints export lines
#        local/ceph_rgw.sh env            print the export lines of the cluster in $CEPH_DIR
#        local/ceph_rgw.sh down           stop the daemons of $CEPH_DIR by their pid files
#
#   eval "$(local/ceph_rgw.sh up)"        # sets CEPH_DIR, S3_ENDPOINT_URL, AWS_* in this shell
#   ... STORAGE_URL=s3://mybucket/svc make run ...
#   local/ceph_rgw.sh down && rm -rf "$CEPH_DIR"
#
# Env:   CEPH_DIR       state directory (up: default a new temporary directory; up wipes it
#                       first only if it holds an earlier cluster of this script, and refuses
#                       any other non-empty directory)
#        MON_PORT       mon, msgr v1 (default 26789); msgr v2 uses MON_PORT+1
#        RGW_PORT       S3 endpoint (default 26480)
#        OSD_PORT_MIN/OSD_PORT_MAX  ports for the OSD's messengers (default 26800-26899; it
#                       needs about 8)
#        S3_ACCESS_KEY/S3_SECRET_KEY  keys of the RGW user "tester" (default testing/testing,
#                       the test suite's throw-away AWS keys)
#        RGW_FRONTEND   civetweb (default) | beast
# The default ports lie below Linux's ephemeral range (32768-60999), where outgoing
# connections could already hold them; tests/support/ceph_rgw.py picks free ones itself.
#
# Progress goes to stderr, the export lines to stdout. Afterwards the CLIs work too:
#   ceph -c $CEPH_DIR/ceph.conf -s ;  radosgw-admin -c $CEPH_DIR/ceph.conf bucket list
#
# Quirks of RGW 16 worth knowing:
# - If-Match is honoured only with the ETag WITHOUT quotes (core/storage/s3.py sends it so).
# - With the beast frontend radosgw 16.2.15 aborts (boost "nullptr != fctx_") on a
#   multi-object delete in a bucket that has a notification configuration: hence civetweb.
# - Non-persistent bucket-notification topics push synchronously, inside the S3 request.
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd radosgw ceph-common curl)
COMMANDS=(ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl)
MARK=.delta-upload-ceph-rgw   # marks a directory as ours, so `up` may wipe it

MON_PORT=${MON_PORT:-26789}
MON_PORT2=$((MON_PORT + 1))
RGW_PORT=${RGW_PORT:-26480}
OSD_PORT_MIN=${OSD_PORT_MIN:-26800}
OSD_PORT_MAX=${OSD_PORT_MAX:-26899}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-testing}
S3_SECRET_KEY=${S3_SECRET_KEY:-testing}
RGW_FRONTEND=${RGW_FRONTEND:-civetweb}

say() { printf 'ceph_rgw: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

missing_commands() {
  local c missing=()
  for c in "${COMMANDS[@]}"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  echo "${missing[*]}"
}

cmd_install() {
  local missing log
  missing=$(missing_commands)
  [ -z "$missing" ] && { say "packages already installed"; return 0; }
  say "missing: $missing; installing ${PACKAGES[*]}"
  command -v apt-get >/dev/null 2>&1 \
    || die "cannot install Ceph: no apt-get on this machine (install ${PACKAGES[*]} by hand)"
  [ "$(id -u)" = 0 ] \
    || die "cannot install Ceph: apt-get needs root (run: sudo $0 install)"
  log=$(mktemp)
  if ! apt-get update -qq >"$log" 2>&1; then
    tail -20 "$log" >&2; rm -f "$log"
    die "cannot install Ceph: 'apt-get update' failed (no network to the package mirror?)"
  fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${PACKAGES[@]}" >"$log" 2>&1; then
    tail -20 "$log" >&2; rm -f "$log"
    die "cannot install Ceph: 'apt-get install ${PACKAGES[*]}' failed"
  fi
  rm -f "$log"
  missing=$(missing_commands)
  [ -z "$missing" ] || die "cannot install Ceph: still missing after apt-get install: $missing"
  say "installed $(radosgw --version 2>/dev/null | head -1)"
}

need_dir() {
  [ -n "${CEPH_DIR:-}" ] || die "set CEPH_DIR to the directory given by 'up'"
  [ -f "$CEPH_DIR/$MARK" ] || die "$CEPH_DIR holds no cluster of this script"
}

running() {
  # alive and not a zombie waiting for init to reap it (kill -0 succeeds on zombies)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

stop() {
  # TERM the daemons of the given pid files, wait <= 3 s, then KILL what is left
  local pids="" f pid alive
  for f in "$@"; do
    [ -e "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then pids="$pids $pid"; fi
    rm -f "$f"
  done
  for _ in $(seq 30); do
    alive=""
    for pid in $pids; do if running "$pid"; then alive="$alive $pid"; fi; done
    pids=$alive
    [ -z "$pids" ] && return 0
    sleep 0.1
  done
  for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
}

cmd_down() {
  # Only the daemons we started, by the pids in our pid files. radosgw first: it takes
  # seconds to exit once the mon and OSD are gone. Everything lives in RAM and $CEPH_DIR
  # and is thrown away, so no clean shutdown is needed.
  stop "$CEPH_DIR/run/radosgw.pid"
  stop "$CEPH_DIR/run/osd.0.pid" "$CEPH_DIR/run/mon.a.pid"
}

cmd_env() {
  need_dir
  cat "$CEPH_DIR/env"
}

rgw_log_tail() {
  tail -n 30 "$CEPH_DIR/log/client.rgw.a.log" "$CEPH_DIR/log/rgw.stdout" >&2 2>/dev/null || true
}

cmd_up() {
  [ -z "$(missing_commands)" ] || die "Ceph is not installed (missing: $(missing_commands)); run: $0 install"
  case $RGW_FRONTEND in
    civetweb) FRONTEND_LINE="rgw_frontends = civetweb port=127.0.0.1:$RGW_PORT num_threads=64" ;;
    beast)    FRONTEND_LINE="rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT" ;;
    *) die "RGW_FRONTEND must be civetweb or beast" ;;
  esac
  if [ -z "${CEPH_DIR:-}" ]; then
    CEPH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ceph-rgw.XXXXXX")
  elif [ -f "$CEPH_DIR/$MARK" ]; then
    cmd_down
    rm -rf "${CEPH_DIR:?}"/* "$CEPH_DIR/$MARK"
  elif [ -d "$CEPH_DIR" ] && [ -n "$(ls -A "$CEPH_DIR")" ]; then
    die "$CEPH_DIR is not empty and holds no cluster of this script; not touching it"
  fi
  mkdir -p "$CEPH_DIR"
  CEPH_DIR=$(cd "$CEPH_DIR" && pwd)
  touch "$CEPH_DIR/$MARK"
  mkdir -p "$CEPH_DIR"/{mon.a,osd.0,rgw,run,log,crash}
  local conf=$CEPH_DIR/ceph.conf t0=$EPOCHREALTIME fsid osd_uuid osd_id ok
  ts() { say "$(awk "BEGIN{printf \"[%5.2fs]\", $EPOCHREALTIME - $t0}") $*"; }
  # a failure half-way must not leave daemons behind
  trap 'say "start failed; stopping what was started (logs in $CEPH_DIR/log)"; cmd_down' ERR

  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat > "$conf" <<EOF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]
public_addr = 127.0.0.1
public_network = 127.0.0.0/8
ms_bind_ipv6 = false
ms_bind_port_min = $OSD_PORT_MIN
ms_bind_port_max = $OSD_PORT_MAX
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# radosgw's built-in defaults are ms_mon_client_mode=secure (+ cephx); 'secure' is
# impossible with auth=none -> "get_initial_auth_request returned -13" forever.
ms_mon_client_mode = crc
ms_client_mode = crc
run_dir = $CEPH_DIR/run
pid_file = $CEPH_DIR/run/\$name.pid
admin_socket = $CEPH_DIR/run/\$name.asok
log_file = $CEPH_DIR/log/\$name.log
mon_cluster_log_file = $CEPH_DIR/log/cluster.log
crash_dir = $CEPH_DIR/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_max_pg_per_osd = 1000

[mon]
mon_data = $CEPH_DIR/mon.\$id
mon_initial_members = a
# commit osdmap changes (the ~7 pools radosgw creates) at once instead of once a second:
# radosgw starts in ~0.5 s instead of ~9 s, the first bucket create takes ~50 ms, not ~2 s
paxos_propose_interval = 0.01
paxos_min_wait = 0.001

[osd]
osd_data = $CEPH_DIR/osd.\$id
osd_objectstore = memstore
# memstore keeps all objects in the OSD's RAM; this is the advertised "device" size
memstore_device_bytes = 2147483648
osd_op_num_shards = 1
osd_op_num_threads_per_shard = 2

[client]
rgw_data = $CEPH_DIR/rgw
$FRONTEND_LINE
rgw_thread_pool_size = 64
rgw_dns_name = localhost
# collect the tails of deleted/overwritten objects (> 4 MiB) after 30 s instead of 2 h:
# with memstore every stored byte is OSD RAM
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
EOF

  monmaptool --create --clobber --fsid "$fsid" \
    --addv a "[v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]" "$CEPH_DIR/monmap" >/dev/null
  ceph-mon -c "$conf" -i a --mkfs --monmap "$CEPH_DIR/monmap"
  timeout 30 ceph-mon -c "$conf" -i a            # daemonizes, writes run/mon.a.pid
  ts "mon started on 127.0.0.1:$MON_PORT"

  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  osd_id=$(timeout 60 ceph -c "$conf" --connect-timeout 30 osd new "$osd_uuid")   # -> 0
  timeout 60 ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" \
    >"$CEPH_DIR/log/osd-mkfs.out" 2>&1
  timeout 60 ceph-osd -c "$conf" -i "$osd_id" 2>>"$CEPH_DIR/log/osd.stderr"   # daemonizes
  ok=0
  for _ in $(seq 120); do   # <= ~30 s plus the ceph calls' own bound
    if timeout 10 ceph -c "$conf" osd dump 2>/dev/null | grep -q "^osd.$osd_id up"; then ok=1; break; fi
    sleep 0.25
  done
  [ $ok = 1 ] || { tail -n 20 "$CEPH_DIR/log/osd.$osd_id.log" >&2 || true; false; }
  ts "osd.$osd_id up (ports $OSD_PORT_MIN-$OSD_PORT_MAX)"

  # radosgw runs in the foreground (-f), backgrounded by us: when it daemonizes itself it
  # forks only after it has reached the cluster, so a problem would hang this script.
  setsid radosgw -c "$conf" -n client.rgw.a -f </dev/null >"$CEPH_DIR/log/rgw.stdout" 2>&1 &
  echo $! > "$CEPH_DIR/run/radosgw.pid"
  ok=0
  for _ in $(seq 240); do   # <= ~60 s
    if curl -s -m 2 -o /dev/null "http://127.0.0.1:$RGW_PORT/"; then ok=1; break; fi
    kill -0 "$(cat "$CEPH_DIR/run/radosgw.pid")" 2>/dev/null || break
    sleep 0.25
  done
  if [ $ok != 1 ]; then
    say "radosgw did not answer on 127.0.0.1:$RGW_PORT; log: $CEPH_DIR/log/client.rgw.a.log"
    rgw_log_tail
    false
  fi
  ts "radosgw answering on 127.0.0.1:$RGW_PORT ($RGW_FRONTEND)"

  timeout 60 radosgw-admin -c "$conf" user create --uid=tester --display-name="Tester" \
    --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
  trap - ERR
  cat > "$CEPH_DIR/env" <<EOF
export CEPH_DIR=$CEPH_DIR
export S3_ENDPOINT_URL=http://127.0.0.1:$RGW_PORT
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1
EOF
  ts "S3 ready at http://127.0.0.1:$RGW_PORT (user tester); stop with: CEPH_DIR=$CEPH_DIR $0 down"
  cat "$CEPH_DIR/env"
}

case "${1:-}" in
  install) cmd_install ;;
  up)      cmd_up ;;
  env)     cmd_env ;;
  down)    need_dir; cmd_down ;;
  *)       sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
