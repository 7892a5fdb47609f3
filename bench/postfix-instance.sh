#!/usr/bin/env bash
# Starts a private Postfix instance on loopback, in its own directory, relaying the given domain
# to a host:port. Used by bench/smtp.sh (the stock peer) and by the gateway tests (a real
# downstream). Usage: postfix-instance.sh DIR LISTEN_PORT RELAY_HOST:PORT [extra main.cf lines...]
# Environment: SMTPD_OPTIONS is appended to the smtpd line of master.cf (`-o content_filter=...`),
# MASTER_EXTRA (lines) to master.cf (a pipe(8) service).
# Stop it with: postfix -c DIR/etc stop
set -euo pipefail
dir=$1 port=$2 relay=$3
shift 3
mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
chmod 755 "$dir"
chown postfix "$dir/data" 2>/dev/null || true
cat > "$dir/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = downstream.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = example.com
relay_recipient_maps =
transport_maps =
relay_transport = smtp:[${relay%:*}]:${relay##*:}
default_transport = smtp:[${relay%:*}]:${relay##*:}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
smtp_tls_security_level = none
biff = no
append_dot_mydomain = no
default_process_limit = 200
CONF
for line in "$@"; do echo "$line" >> "$dir/etc/main.cf"; done
cat > "$dir/etc/master.cf" <<CONF
127.0.0.1:$port inet n - n - - smtpd ${SMTPD_OPTIONS:-}
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
${MASTER_EXTRA:-}
CONF
postfix -c "$dir/etc" check >/dev/null 2>&1 || postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || true
postfix -c "$dir/etc" start >/dev/null 2>&1 || { script -qc "postfix -c $dir/etc start" /dev/null >&2; exit 1; }
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then exit 0; fi
  sleep 0.1
done
echo "postfix instance in $dir did not start; see $dir/maillog" >&2
exit 1
