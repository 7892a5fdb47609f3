#!/usr/bin/env bash
# Writes the benchmarks' load message to OUT: two links to rewrite; with `attachments` also the
# clean PDF, Word, zip and QR fixtures of tests/fixtures/detect/ (about 6 KB of files). Lines end
# in LF: smtp-source adds the CR. Used by bench/smtp.sh and bench/milter.sh.
#   bench/load-message.sh OUT plain|attachments
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 load=$2
cat > "$out" <<'MSG'
From: Load <load@sender.bench>
To: bob@example.com
Subject: benchmark message
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello Bob,

Your statement is ready at https://statements.example.org/view?id=12345 and the
terms are at https://www.example.org/terms. Reply if anything looks wrong.

Regards,
The load generator
MSG

if [ "$load" = attachments ]; then
  python3 - "$out" tests/fixtures/detect/attach-clean-pdf.eml tests/fixtures/detect/attach-clean-docx.eml \
    tests/fixtures/detect/attach-clean-zip.eml tests/fixtures/detect/qr-clean.eml <<'PY'
import email, email.policy, sys
from email.message import EmailMessage
out, fixtures = sys.argv[1], sys.argv[2:]
plain = email.message_from_bytes(open(out, "rb").read(), policy=email.policy.default)
message = EmailMessage()
for name in ("From", "To", "Subject"):
    message[name] = plain[name]
message.set_content(plain.get_content())
for path in fixtures:
    for part in email.message_from_bytes(open(path, "rb").read(), policy=email.policy.default).walk():
        if part.get_filename():
            maintype, subtype = part.get_content_type().split("/")
            message.add_attachment(part.get_payload(decode=True), maintype=maintype, subtype=subtype,
                                   filename=part.get_filename())
# smtp-source adds the CR itself: lines end in LF here.
open(out, "wb").write(message.as_bytes(policy=email.policy.default))
PY
fi
