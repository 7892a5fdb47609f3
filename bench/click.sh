#!/usr/bin/env bash
# Click service throughput next to nginx, same machine, same wrk settings, one run.
#  1. warm: one clean link whose verdict is cached, click logging on, default durability (WAL,
#     synchronous=NORMAL, every click committed before its answer) vs nginx `return 302`.
#  2. cold: every request a different link, so every click asks a local Safe Browsing server that
#     answers after 20 ms.
# Usage: bench/click.sh [duration_seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-64}
threads=2
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi
cargo build --release --quiet
bin=target/release/portcullis
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -c "$work/nginx.conf" -s stop 2>/dev/null; rm -rf "$work"' EXIT

python3 bench/fake_safe_browsing.py 18090 20 2>"$work/fake-safe-browsing.log" &
cat > "$work/portcullis.toml" <<TOML
data_dir = "$work/data"
[click]
listen = "127.0.0.1:18025"
[reputation]
deadline_ms = 2000
[reputation.safe_browsing]
api_key = "bench"
base_url = "http://127.0.0.1:18090"
[reputation.cache]
max_entries = 1000000
TOML
RUST_LOG=warn $bin --config "$work/portcullis.toml" serve > "$work/serve.log" 2>&1 &
cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log $work/nginx-access.log;
  server {
    listen 127.0.0.1:18080;
    location / { return 302 https://docs.example.org/guide; }
  }
}
NGINX
nginx -c "$work/nginx.conf"
sleep 1

# One clean link for the warm run; 200k distinct links for the cold run.
printf 'From: bench@example.org\nSubject: bench\n\nhttps://docs.example.org/guide\n' |
  $bin --config "$work/portcullis.toml" rewrite 2>/dev/null | grep -o 'http://127[^ ]*' | head -1 |
  sed 's|^http://127.0.0.1:8025||' > "$work/warm.txt"
python3 - "$work/cold.eml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("From: bench@example.org\nSubject: cold\n\n")
    for i in range(200000):
        f.write(f"https://cold{i}.example.net/page/{i}\n")
PY
$bin --config "$work/portcullis.toml" rewrite < "$work/cold.eml" 2>/dev/null | grep -o 'http://127[^ ]*' |
  sed 's|^http://127.0.0.1:8025||' > "$work/cold.txt"
warm=$(cat "$work/warm.txt")
curl -s -o /dev/null "http://127.0.0.1:18025$warm"   # fill the cache

cat > "$work/paths.lua" <<'LUA'
local counter = 0
function setup(thread) thread:set("id", counter); counter = counter + 1 end
function init(args)
  paths = {}
  for line in io.lines(os.getenv("LINKS")) do paths[#paths + 1] = line end
  i = id * math.floor(#paths / 2)
end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
# Latency percentiles in milliseconds, for every run (wrk's own table stops at p99).
cat > "$work/latency.lua" <<'LUA'
function done(summary, latency, requests)
  io.write(string.format("LATENCY %.2f %.2f %.2f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
LUA
cat "$work/latency.lua" >> "$work/paths.lua"

run() { # name url [script]
  local out
  if [ -n "${3:-}" ]; then
    out=$(LINKS="$3" wrk -t$threads -c"$connections" -d"${duration}s" --latency -s "$work/paths.lua" "$2")
  else
    out=$(wrk -t$threads -c"$connections" -d"${duration}s" --latency -s "$work/latency.lua" "$2")
  fi
  local rps latency non3xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  latency=$(echo "$out" | awk '$1 == "LATENCY" {printf "p50 %6.2fms  p99 %6.2fms  p99.9 %6.2fms", $2, $3, $4}')
  non3xx=$(echo "$out" | awk '/Non-2xx or 3xx/ {print $5}')
  printf '%-24s %11s req/s   %s   errors %s\n' "$1" "$rps" "$latency" "${non3xx:-0}"
  echo "$rps" > "$work/$1.rps"
}

echo "wrk -t$threads -c$connections -d${duration}s on $(nproc) cores"
run nginx-return-302 "http://127.0.0.1:18080/"
run portcullis-warm "http://127.0.0.1:18025$warm"
run portcullis-cold-20ms "http://127.0.0.1:18025" "$work/cold.txt"
python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
n = float(open(f"{w}/nginx-return-302.rps").read())
p = float(open(f"{w}/portcullis-warm.rps").read())
c = float(open(f"{w}/portcullis-cold-20ms.rps").read())
print(f"warm / nginx = {p / n:.2f}   cold / nginx = {c / n:.3f}")
PY
echo "clicks logged: $($bin --config "$work/portcullis.toml" clicks --limit 0 | wc -l)"
echo "Safe Browsing lookups: $(curl -s http://127.0.0.1:18090/)"
echo "click store: $(find "$work/data/clicks" -name '*.db' | wc -l) slices, $(du -sh "$work/data/clicks" | cut -f1)"
