#!/usr/bin/env bash
# Memory and store growth for one large message to many recipients: a 10 MiB plain-text message
# (a link per line) to 100 recipients through the SMTP gateway (authentication off, delivery to a
# port nobody listens on yet, so copies stay queued). Prints the server's peak resident size and
# how much the data directory grew; then starts smtp-sink there and reports the same once every
# copy has been rendered and delivered.   bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/portcullis
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/p.toml" <<TOML
data_dir = "$work/data"
[click]
listen = "127.0.0.1:18225"
[admin]
listen = ""
[smtp]
listen = "127.0.0.1:12625"
domains = ["example.com"]
max_message_bytes = 52428800
[pipeline]
authenticate = false
[delivery]
relay = ["127.0.0.1:12626"]
tls = "off"
retry_secs = [1]
TOML
RUST_LOG=warn $bin --config "$work/p.toml" serve > "$work/serve.log" 2>&1 &
pid=$!
sleep 1.5
before=$(du -sb "$work/data" | cut -f1)
python3 - <<'PY'
import smtplib, random
lines = []
random.seed(1)
body = []
size = 0
i = 0
while size < 10 * 1024 * 1024:
    line = f"Line {i}: see https://docs.example.org/page/{i} and some filler text to make the line longer.\r\n"
    body.append(line); size += len(line); i += 1
msg = "From: a@sender.test\r\nTo: list@example.com\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n" + "".join(body)
import time
started = time.time()
s = smtplib.SMTP("127.0.0.1", 12625, timeout=300)
s.ehlo("client.test")
rcpts = [f"user{n}@example.com" for n in range(100)]
refused = s.sendmail("a@sender.test", rcpts, msg.encode())
print(f"accepted for {len(rcpts) - len(refused)} recipients in {time.time() - started:.1f} s")
s.quit()
PY
# Filed when all 100 copies are queued; then a few delivery passes against the closed relay.
for _ in $(seq 1 600); do
  [ "$($bin --config "$work/p.toml" queue list 2>/dev/null | wc -l)" -ge 100 ] && break
  sleep 0.5
done
echo "queued: $($bin --config "$work/p.toml" queue list 2>/dev/null | wc -l) copies"
sleep 3
echo "peak RSS: $(grep VmHWM /proc/$pid/status)"
after=$(du -sb "$work/data" | cut -f1)
echo "data dir grew by $(( (after - before) / 1024 / 1024 )) MiB"
ls -la "$work/data" | grep -i gateway
# Then the relay comes up: every copy is rendered (its own links, stamped) as it is delivered.
started=$(date +%s.%N)
as_user=(); [ "$(id -u)" = 0 ] && as_user=(-u nobody)
smtp-sink "${as_user[@]}" 127.0.0.1:12626 1000 &
for _ in $(seq 1 1200); do
  [ "$($bin --config "$work/p.toml" queue list 2>/dev/null | wc -l)" -eq 0 ] && break
  kill -0 $! || { echo "smtp-sink did not start" >&2; exit 1; }
  sleep 0.5
done
echo "delivered: $(( 100 - $($bin --config "$work/p.toml" queue list 2>/dev/null | wc -l) )) copies in $(echo "$(date +%s.%N) - $started" | bc) s"
echo "peak RSS after delivery: $(grep VmHWM /proc/$pid/status)"
echo "data dir now $(( $(du -sb "$work/data" | cut -f1) / 1024 / 1024 )) MiB"
