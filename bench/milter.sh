#!/usr/bin/env bash
# Messages per second through a Postfix that hands every message to a content-filter milter, in one
# run and with the same load: (a) Postfix alone, (b) Postfix with rspamd as its milter, (c) Postfix
# with Portcullis's milter; all three relay to the same smtp-sink. Also CPU time per message of each
# Postfix instance and of each filter's processes (read from /proc over the same window).
#   bench/milter.sh [MESSAGES] [SESSIONS] [plain|attachments]
#   MILTER_BENCH_SKIP_PORTCULLIS=1   only (a) and (b): no build, no Portcullis, no ratios
#   ARC_SEAL=1                       Portcullis also ARC-seals every message (two RSA-2048 signatures),
#                                    which rspamd here does not do (it verifies ARC; signing needs a key)
# Load: the message of bench/smtp.sh (two links; with `attachments` also the clean PDF, Word, zip
# and QR fixtures), sent by smtp-source over SESSIONS connections.
# The three Postfix instances are the same (bench/postfix-instance.sh) but for smtpd_milters, and
# both filters see the same evidence: the full message and its envelope from 127.0.0.1, DNS answered
# NXDOMAIN at once by bench/fake_dns.py, a Bayes/classifier trained on the same SpamAssassin corpus.
# rspamd runs as shipped (Debian's $CONFDIR) from a private config, run and data directory, as a
# proxy worker in milter mode that scans by itself (self_scan, two processes for two cores), a
# controller for learning, a private redis, and no module that asks a remote service (listed below).
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-5000}
sessions=${2:-20}
load=${3:-plain}
skip_portcullis=${MILTER_BENCH_SKIP_PORTCULLIS:-}
[[ $messages =~ ^[1-9][0-9]*$ && $sessions =~ ^[1-9][0-9]*$ && $load =~ ^(plain|attachments)$ ]] ||
  { echo "usage: $0 [MESSAGES] [SESSIONS] [plain|attachments]" >&2; exit 2; }
packages=()
command -v smtp-source >/dev/null || packages+=(postfix)
command -v rspamd >/dev/null || packages+=(rspamd)
command -v redis-server >/dev/null || packages+=(redis-server)
command -v swaks >/dev/null || packages+=(swaks)
if [ ${#packages[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
[ -n "$skip_portcullis" ] || cargo build --release --quiet
work=$(mktemp -d)
chmod 755 "$work"  # the postfix user must reach its queues inside, rspamd's user its files
user=$(id -un)
pids=()
postfixes=()
cleanup() {
  local dir pid i
  [ -n "${KEEP_LOGS:-}" ] && cp "$work"/serve.err "$KEEP_LOGS" 2>/dev/null || true
  for dir in "${postfixes[@]}"; do
    postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # postfix stop only signals the master: wait until each is gone before its queue is removed.
  for dir in "${postfixes[@]}"; do
    pid=$(cat "$dir/queue/pid/master.pid" 2>/dev/null || true); pid=${pid// /}
    for ((i = 0; i < 100; i++)); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Polls CMD... every 0.1 s for up to SECONDS; fails with WHAT when it never succeeds.
wait_for() {
  local what=$1 seconds=$2 i; shift 2
  for ((i = 0; i < seconds * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$what not ready within ${seconds}s" >&2; return 1
}
sink_port=$(port); dns_port=$(port); redis_port=$(port); rspamd_port=$(port); controller_port=$(port)
postfix_port=$(port); postfix_rspamd_port=$(port); postfix_portcullis_port=$(port)
milter_port=$(port); click_port=$(port)

# One sink for all, writing one file per message it accepts (that is how arrivals are counted).
mkdir -p "$work/sink"
smtp-sink -u "$user" -d "$work/sink/%H%M%S." "127.0.0.1:$sink_port" 1000 >/dev/null 2>&1 &
sink_pid=$!
pids+=("$sink_pid")
python3 bench/fake_dns.py "$dns_port" &
dns_pid=$!
pids+=("$dns_pid")

# The same Postfix for the three; only the milter differs. The macros are the ones rspamd's
# integration guide asks for (the client address and name, the queue id, the sender, the login);
# tempfail, so that a filter that fails shows up as refused mail instead of unscanned mail.
milter_conf() {
  echo "smtpd_milters = inet:127.0.0.1:$1"
  echo "milter_protocol = 6"
  echo "milter_default_action = tempfail"
  echo "milter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}"
}
start_postfix() {  # DIR PORT [main.cf lines...]
  local dir=$1 port=$2; shift 2
  postfixes+=("$dir")
  bench/postfix-instance.sh "$dir" "$port" "127.0.0.1:$sink_port" "$@"
}
start_postfix "$work/postfix" "$postfix_port"

# The corpus both filters learn from (.ci/fetch-corpus checks its checksum): the same directories as
# bench/smtp.sh trains Portcullis on.
bash .ci/fetch-corpus >/dev/null
corpus=target/corpus/package/data
spam_dirs=(spam-1 spam-2)
ham_dirs=(easy-ham-1 easy-ham-2 hard-ham-1)

# --- rspamd -------------------------------------------------------------------------------------
rs=$work/rspamd
mkdir -p "$rs/local.d" "$rs/override.d" "$rs/db" "$rs/run" "$rs/log" "$rs/redis"
# Bayes statistics, history, neural and replies data in memory: nothing saved, nothing shared.
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$rs/redis" \
  --logfile "$rs/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
wait_for redis 30 redis-cli -p "$redis_port" ping
# Our own top-level config instead of /etc/rspamd/rspamd.conf: the same defaults from $CONFDIR, but
# our ports and workers, and (with the --var below) LOCAL_CONFDIR, DBDIR (hyperscan cache), RUNDIR
# and LOGDIR in the work dir, so nothing in /etc or /var is read or written.
cat > "$rs/rspamd.conf" <<CONF
.include "\$CONFDIR/common.conf"
options {
  pidfile = "\$RUNDIR/rspamd.pid";
  .include "\$CONFDIR/options.inc"
  .include(try=true; priority=1,duplicate=merge) "\$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
  type = "file";
  filename = "\$LOGDIR/rspamd.log";
  .include "\$CONFDIR/logging.inc"
}
# The milter: Postfix talks to the proxy, which scans by itself (self_scan) instead of passing the
# message on to a normal worker, so the proxy processes are the scanners: two for two cores. No
# normal worker (nothing would call it), no fuzzy storage.
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:$rspamd_port";
  .include "\$CONFDIR/worker-proxy.inc"
  .include(priority=1,duplicate=merge) "\$LOCAL_CONFDIR/local.d/worker-proxy.inc"
}
# Learning only; no password from 127.0.0.1.
worker "controller" {
  bind_socket = "127.0.0.1:$controller_port";
  count = 1;
  secure_ip = "127.0.0.1";
  static_dir = "\${WWWDIR}";
}
CONF
# (In a local.d file at priority 1 as /etc/rspamd/rspamd.conf does it: the same keys written next to
# the shipped ones in the section are not overrides but duplicates, and rspamd then took the shipped
# count = 1.)
cat > "$rs/local.d/worker-proxy.inc" <<CONF
milter = yes;
timeout = 120s;
upstream "local" {
  default = yes;
  self_scan = yes;
}
count = 2;
CONF
# check_local: mail from 127.0.0.1 is "local" to rspamd, and SPF, DMARC, hfilter and once_received
# skip local senders; every sender here is 127.0.0.1, and Portcullis checks them all, so rspamd too.
cat > "$rs/local.d/options.inc" <<CONF
dns { nameserver = ["127.0.0.1:$dns_port"]; }
check_local = true;
CONF
echo "servers = \"127.0.0.1:$redis_port\";" > "$rs/local.d/redis.conf"
# The scan shows in the delivered message: X-Spamd-Result (score and symbols), X-Rspamd-Server,
# X-Rspamd-Queue-Id, on every message, local sender or not.
printf '%s\n' 'extended_spam_headers = true;' 'skip_local = false;' 'skip_authenticated = false;' \
  > "$rs/local.d/milter_headers.conf"
# "Network modules off" means: off, every module that asks a remote service about a message, namely
# DNS block and URL lists (rbl, which also runs the SURBL/URIBL and e-mail lists, surbl, emails), the
# hash services (fuzzy_check, dcc), ASN lookups at asn.rspamd.com (asn), the URL redirect follower
# (url_redirector, HTTP), the MX connection check (mx_check), scanners and exporters behind a socket
# (external_services, antivirus, spamassassin, p0f, bimi, clickhouse, elastic, metadata_exporter),
# rule updates (rspamd_update); and the phishing feeds (phishtank, openphish), while the phishing
# module's own link checks stay. Off too, greylist: it answers 4xx to a first sighting by design,
# which is not what is measured. The DNS tests stay on, answered locally at once like Portcullis's:
# spf, dkim, dmarc, arc, hfilter, once_received. Maps that rspamd would fetch from maps.rspamd.com
# fail at once (NXDOMAIN) and their rules stay quiet; mime_types and mid use their shipped copies.
for module in rbl surbl emails fuzzy_check dcc asn url_redirector mx_check external_services \
  antivirus spamassassin p0f bimi clickhouse elastic metadata_exporter rspamd_update greylist; do
  echo 'enabled = false;' > "$rs/local.d/$module.conf"
done
printf '%s\n' 'phishtank_enabled = false;' 'openphish_enabled = false;' > "$rs/local.d/phishing.conf"
echo 'file = ["${CONFDIR}/maps.d/mime_types.inc"];' > "$rs/override.d/mime_types.conf"
echo 'source { url = ["${CONFDIR}/maps.d/mid.inc"]; }' > "$rs/override.d/mid.conf"
# rspamd will not run its workers as root: as root, nobody runs them (as in bench/detection.sh).
if [ "$(id -u)" = 0 ]; then rspamd_user=(-u nobody -g nogroup); chown -R nobody:nogroup "$rs/db" "$rs/run" "$rs/log"
else rspamd_user=(-u "$user" -g "$(id -gn)"); fi
rspamd_vars=(--var="LOCAL_CONFDIR=$rs" --var="DBDIR=$rs/db" --var="RUNDIR=$rs/run" --var="LOGDIR=$rs/log")
rspamadm "${rspamd_vars[@]}" configtest -c "$rs/rspamd.conf" > "$rs/configtest.out" 2>&1 ||
  { cat "$rs/configtest.out" >&2; exit 1; }
rspamd -f "${rspamd_user[@]}" -c "$rs/rspamd.conf" "${rspamd_vars[@]}" > "$rs/rspamd.out" 2>&1 &
rspamd_pid=$!
pids+=("$rspamd_pid")
wait_for rspamd 120 rspamc -h "127.0.0.1:$controller_port" stat ||
  { tail "$rs/rspamd.out" "$rs/log/rspamd.log" >&2; exit 1; }
# The same corpus as Portcullis learns, through the controller; Learn-Type: bulk learns every message
# (not only the ones the Bayes gets wrong). The files are mbox entries: the "From " line goes first.
python3 - "$corpus" "$rs/corpus" "${spam_dirs[@]/#/spam:}" "${ham_dirs[@]/#/ham:}" <<'PY'
import os, sys
src, dst, groups = sys.argv[1], sys.argv[2], sys.argv[3:]
for group in groups:
    klass, name = group.split(":")
    os.makedirs(os.path.join(dst, klass), exist_ok=True)
    for file in sorted(os.listdir(os.path.join(src, name))):
        if file.endswith(".txt"):
            raw = open(os.path.join(src, name, file), "rb").read()
            if raw.startswith(b"From "):
                raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
            open(os.path.join(dst, klass, f"{name}.{file[:-4]}.eml"), "wb").write(raw)
PY
for class in spam ham; do
  rspamc -h "127.0.0.1:$controller_port" --header 'Learn-Type: bulk' "learn_$class" "$rs/corpus/$class" \
    > "$rs/learn-$class.out" 2>&1 || true
done
learns_spam=$(redis-cli -p "$redis_port" hget RS learns_spam); learns_ham=$(redis-cli -p "$redis_port" hget RS learns_ham)
[ "${learns_spam:-0}" -ge 200 ] && [ "${learns_ham:-0}" -ge 200 ] ||
  { echo "rspamd learned ${learns_spam:-0} spam, ${learns_ham:-0} ham: too few for its Bayes" >&2; exit 1; }
echo "  (rspamd: Bayes learned $learns_spam spam, $learns_ham ham)" >&2
# Hyperscan compiles its databases in the background after start; measuring must not run on the
# slower fallback, nor next to the compiler, so wait until both scanners have loaded them.
hyperscan_loaded() { [ "$(grep -c 'rspamd_proxy).*hyperscan database of .* has been loaded' "$rs/log/rspamd.log")" -ge 2 ]; }
if grep -qi hyperscan "$rs/log/rspamd.log"; then
  wait_for "rspamd hyperscan" 600 hyperscan_loaded || echo "rspamd: hyperscan not loaded, measuring anyway" >&2
fi
mapfile -t lines < <(milter_conf "$rspamd_port")
start_postfix "$work/postfix-rspamd" "$postfix_rspamd_port" "${lines[@]}"

# --- Portcullis ---------------------------------------------------------------------------------
if [ -z "$skip_portcullis" ]; then
  cat > "$work/portcullis.toml" <<CONF
[smtp]
hostname = "gw.bench"
domains = ["example.com"]
max_connections_per_ip = 1000
[dns]
nameservers = ["127.0.0.1:$dns_port"]
[pipeline]
arc_seal = $( [ "${ARC_SEAL:-}" = 1 ] && echo true || echo false )
# No /metrics and HTTP API listener: its default port is fixed, and the milter is what is measured.
[admin]
listen = ""
CONF
  # Every detector on: the classifier too, trained on the same corpus as rspamd's Bayes.
  train=()
  for dir in "${spam_dirs[@]}"; do train+=(--spam "$corpus/$dir"); done
  for dir in "${ham_dirs[@]}"; do train+=(--ham "$corpus/$dir"); done
  target/release/portcullis --config "$work/portcullis.toml" --data-dir "$work/data" train "${train[@]}" 2>/dev/null
  target/release/portcullis --config "$work/portcullis.toml" --data-dir "$work/data" \
    serve --listen "127.0.0.1:$click_port" --smtp-listen "" --milter-listen "127.0.0.1:$milter_port" \
    > "$work/serve.out" 2> "$work/serve.err" &
  portcullis_pid=$!
  pids+=("$portcullis_pid")
  wait_for portcullis 60 grep -q "milter listening on inet:127.0.0.1:$milter_port" "$work/serve.out" ||
    { tail "$work/serve.out" "$work/serve.err" >&2; exit 1; }
  mapfile -t lines < <(milter_conf "$milter_port")
  start_postfix "$work/postfix-portcullis" "$postfix_portcullis_port" "${lines[@]}"
fi

bench/load-message.sh "$work/message.eml" "$load"

sink_total() { find "$work/sink" -type f | wc -l; }

# One message through each Postfix before any measurement: it must reach the sink, and through a
# filter it must carry what the filter says of it (rspamd: X-Spamd-Result). Prints the filter's
# headers of that copy. Also the filters' first scan (Lua, caches) happens here, not in the run.
check() {
  local name=$1 front=$2 want=$3 before copy
  before=$(sink_total)
  swaks --silent 2 --server "127.0.0.1:$front" --helo client.bench --from load@sender.bench \
    --to bob@example.com --header "X-Bench-Check: $name" --data "@$work/message.eml" >/dev/null ||
    { echo "$name: the check message was refused" >&2; return 1; }
  wait_for "$name check message at the sink" 60 sh -c "[ \$(find '$work/sink' -type f | wc -l) -gt $before ]" ||
    return 1
  copy=$(grep -l "^X-Bench-Check: $name" "$work"/sink/* | head -1)
  if [ -n "$want" ] && ! grep -q "$want" "$copy"; then
    echo "$name: the delivered check message has no $want header:" >&2; sed '/^$/q' "$copy" >&2; return 1
  fi
  python3 - "$name" "$copy" >&2 <<'PY'
import email, email.policy, re, sys
name, path = sys.argv[1:]
message = email.message_from_bytes(open(path, "rb").read(), policy=email.policy.compat32)
for key, value in message.items():
    if re.match(r"(?i)x-spam|x-rspamd|x-portcullis|authentication-results", key):
        print(f"  {name} check: {key}: {' '.join(value.split())}")
PY
}

# CPU time (user + system, clock ticks) used so far by the process trees rooted at the given pids:
# the time of every live process in them plus what each reaped from its children that exited
# (Postfix's smtpd, cleanup and smtp processes come and go; their master collects their time).
# "all" instead of pids: the whole machine's busy time (user, nice, system, irq, softirq, steal, from
# /proc/stat), to compare with what the pipeline used: more means something else was running too.
ticks() {
  python3 - "$@" <<'PY'
import os, sys
if sys.argv[1:] == ["all"]:
    cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    print(sum(cpu[i] for i in (0, 1, 2, 5, 6, 7)))
    sys.exit()
roots = {int(p) for p in sys.argv[1:]}
stats = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        data = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    fields = data[data.rindex(")") + 2:].split()
    stats[int(pid)] = (int(fields[1]), sum(map(int, fields[11:15])))  # ppid, utime+stime+cutime+cstime
def in_tree(pid):
    while pid > 1:
        if pid in roots:
            return True
        pid = stats[pid][0] if pid in stats else 0
    return False
print(sum(t for pid, (_, t) in stats.items() if in_tree(pid)))
PY
}
master_pid() { tr -d ' ' < "$1/queue/pid/master.pid"; }

# Sends the load to one Postfix; prints messages per second until smtp-source got every 250 and
# until the sink had every message, then CPU milliseconds per message of that Postfix and of each
# "label=pid[,pid...]" process tree given (over the same window, start to the last arrival): the
# filter, its helpers (rspamd's redis) and the local DNS answerer both filters ask; then the sink's
# and the whole machine's (the rest of which is smtp-source, the polling here, and anything else).
run() {
  local name=$1 dir=$2 front=$3; shift 3
  local before start accepted delivered groups=("postfix=$(master_pid "$dir")") group cpu_before=() cpu_after=()
  groups+=("$@" "sink=$sink_pid" "machine=all")
  before=$(sink_total); before=${before:-0}
  for group in "${groups[@]}"; do group=${group#*=}; cpu_before+=("$(ticks ${group//,/ })"); done
  start=$(date +%s.%N)
  smtp-source -d -s "$sessions" -m "$messages" -F "$work/message.eml" -f load@sender.bench \
    -t bob@example.com "127.0.0.1:$front"
  accepted=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    [ "$(( $(sink_total) - before ))" -ge "$messages" ] && break
    sleep 0.05
  done
  delivered=$(date +%s.%N)
  for group in "${groups[@]}"; do group=${group#*=}; cpu_after+=("$(ticks ${group//,/ })"); done
  [ "$(( $(sink_total) - before ))" -ge "$messages" ] ||
    echo "$name: only $(( $(sink_total) - before )) of $messages messages reached the sink" >&2
  python3 - "$name" "$messages" "$start" "$accepted" "$delivered" "$(getconf CLK_TCK)" \
    "${groups[*]%%=*}" "${cpu_before[*]}" "${cpu_after[*]}" <<'PY'
import sys
name, n, start, accepted, delivered = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6])
tick, labels, before, after = int(sys.argv[6]), sys.argv[7].split(), sys.argv[8].split(), sys.argv[9].split()
print(f"{name:<10} accepted {n / (accepted - start):8.0f} msg/s   end to end {n / (delivered - start):8.0f} msg/s")
cpu = [f"{label} {(int(a) - int(b)) * 1000 / tick / n:.2f}" for label, b, a in zip(labels, before, after)]
print(f"{name:<10} cpu ms/msg: " + ", ".join(cpu))
PY
}

# (the load average too: a build running next to this skews every figure)
echo "messages=$messages sessions=$sessions load=$load ($(wc -c < "$work/message.eml") bytes) cores=$(nproc)" \
  "loadavg=$(cut -d' ' -f1 /proc/loadavg)"
check postfix "$postfix_port" ""
check rspamd "$postfix_rspamd_port" "^X-Spamd-Result:"
[ -n "$skip_portcullis" ] || check portcullis "$postfix_portcullis_port" ""
run postfix "$work/postfix" "$postfix_port" | tee "$work/postfix.txt"
run rspamd "$work/postfix-rspamd" "$postfix_rspamd_port" "rspamd=$rspamd_pid" "redis=$redis_pid" "dns=$dns_pid" |
  tee "$work/rspamd.txt"
looked_up=$(grep -c 'dns req: [1-9]' "$rs/log/rspamd.log" || true)
scanned=$(grep -c 'rspamd_task_write_log' "$rs/log/rspamd.log" || true)
echo "  (rspamd: $scanned scans logged, $looked_up of them asked DNS)" >&2
[ -n "$skip_portcullis" ] && exit 0
run portcullis "$work/postfix-portcullis" "$postfix_portcullis_port" "portcullis=$portcullis_pid" "dns=$dns_pid" |
  tee "$work/portcullis.txt"
python3 - "$work/postfix.txt" "$work/rspamd.txt" "$work/portcullis.txt" <<'PY'
import re, sys
def rates(path):
    return [float(x) for x in re.findall(r"([0-9.]+) msg/s", open(path).read())]
def filter_cpu(path):
    return float(re.findall(r"(?:rspamd|portcullis) ([0-9.]+)", open(path).read().split("cpu ms/msg:")[1])[0])
p, r, g = (rates(path) for path in sys.argv[1:])
print(f"ratio portcullis/rspamd: accepted {g[0] / r[0]:.2f}, end to end {g[1] / r[1]:.2f}")
print(f"ratio portcullis/postfix: accepted {g[0] / p[0]:.2f}, end to end {g[1] / p[1]:.2f}")
rc, gc = filter_cpu(sys.argv[2]), filter_cpu(sys.argv[3])
if gc > 0:
    print(f"filter cpu per message rspamd/portcullis: {rc / gc:.2f}")
PY
