//! Detection fixtures: every `.eml` in `tests/fixtures/detect/` is scanned through
//! `portcullis scan --json`, and checked against the `.expect` file beside it: `+SYMBOL` must be
//! found, `-SYMBOL` must not, `verdict NAME` is the decision. Authentication runs against a local
//! DNS server: `example.com` (ours) publishes DMARC `p=none`, nothing else publishes anything.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::Portcullis;
use crate::server::{Record, fake_dns_records};

/// Every detector symbol of the content stages has a fixture that triggers it.
const COVERED: &[&str] = &[
    "FROM_OWN_DOMAIN_UNAUTHENTICATED",
    "FROM_LOOKALIKE_DOMAIN",
    "FROM_VIP_NAME_OUTSIDE",
    "FROM_NAME_HAS_OTHER_ADDRESS",
    "FROM_INVISIBLE_CHARACTERS",
    "REPLY_TO_FREEMAIL",
    "REPLY_TO_OTHER_DOMAIN",
    "MISSING_FROM",
    "MISSING_DATE",
    "INVALID_DATE",
    "MISSING_MESSAGE_ID",
    "INVALID_MESSAGE_ID",
    "SUBJECT_ALL_CAPS",
    "SUBJECT_INVISIBLE_CHARACTERS",
    "EICAR",
    "BULK_LIST_UNSUBSCRIBE",
    "BULK_ONE_CLICK_UNSUBSCRIBE",
    "BULK_LIST_ID",
    "BULK_PRECEDENCE",
    "BULK_ESP",
    "BULK_UNSUBSCRIBE_WORDING",
    "BULK_TRACKING_PIXEL",
    "DATE_IN_FUTURE",
    "DATE_IN_PAST",
    "SUBJECT_FAKE_REPLY",
    "RECEIVED_NONE",
    "HTML_ONLY",
    "HTML_IMAGE_ONLY",
    "HTML_HIDDEN_TEXT",
    "HTML_ZERO_FONT",
    "BODY_EXCESSIVE_CAPS",
    "BODY_OBFUSCATED_WORDS",
    "CHARSET_UNDECLARED_8BIT",
    "PHISH_LINK_TEXT_MISMATCH",
    "PHISH_FORM",
    "PHISH_PASSWORD_FIELD",
    "PHISH_CREDENTIAL_WORDING",
    "URL_IP_LITERAL",
    "URL_SHORTENER",
    "URL_USERINFO",
    "URL_INVISIBLE_CHARACTERS",
    "URL_REPUTATION_MALICIOUS",
    "URL_REPUTATION_SUSPICIOUS",
    "ATTACHMENT_BLOCKED_TYPE",
    "ATTACHMENT_TYPE_MISMATCH",
    "ARCHIVE_BOMB",
    "ARCHIVE_ENCRYPTED",
    "PDF_ENCRYPTED",
    "OFFICE_MACRO",
    "OFFICE_MACRO_HIDDEN",
    "OFFICE_EXTERNAL_TEMPLATE",
    "OFFICE_DDE",
    "ATTACHMENT_ACTIVE_CONTENT",
    "ATTACHMENT_FORM",
    "QR_CODE_URL",
    "PHISH_QR_CODE",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_gets_the_symbols_it_must_and_none_it_must_not() {
    let records: &'static [(&'static str, Record)] = &[("_dmarc.example.com", Record::Txt("v=DMARC1; p=none"))];
    let dns = fake_dns_records(records).await;
    let p = Portcullis::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detect");
    let config = p.write_config(&format!(
        "[smtp]\ndomains = [\"example.com\"]\n[dns]\nnameservers = [\"{dns}\"]\ntimeout_secs = 1\n\
         [reputation]\nprotected_domains = [\"acme-bank.com\"]\n\
         [[reputation.feeds]]\npath = \"{}\"\nformat = \"plain\"\n\
         [pipeline]\nvip_names = [\"Jane Smith\"]\n\
         [[pipeline.sensitive_types]]\nname = \"employee_id\"\npattern = \"EMP-\\\\d{{6}}\"\nkeywords = [\"employee\"]\n\
         [[pipeline.rules]]\nname = \"cards\"\nsensitive = [{{ type = \"credit_card\", min_confidence = 75 }}]\naction = \"symbol\"\nsymbol = \"SENSITIVE_CREDIT_CARD\"\n[[pipeline.rules]]\nname = \"ibans\"\nsensitive = [{{ type = \"iban\", min_confidence = 75 }}]\naction = \"symbol\"\nsymbol = \"SENSITIVE_IBAN\"\n[[pipeline.rules]]\nname = \"my-numbers\"\nsensitive = [{{ type = \"jp_my_number\", min_confidence = 85 }}]\naction = \"symbol\"\nsymbol = \"SENSITIVE_JP_MY_NUMBER\"\n[[pipeline.rules]]\nname = \"ssns\"\nsensitive = [{{ type = \"us_ssn\", min_confidence = 85 }}]\naction = \"symbol\"\nsymbol = \"SENSITIVE_US_SSN\"\n[[pipeline.rules]]\nname = \"employees\"\nsensitive = [{{ type = \"employee_id\", min_confidence = 85 }}]\naction = \"symbol\"\nsymbol = \"SENSITIVE_EMPLOYEE_ID\"\n\
         [pipeline.symbols]\nSENSITIVE_CREDIT_CARD = {{ weight = 0.0, group = \"info\" }}\nSENSITIVE_IBAN = {{ weight = 0.0, group = \"info\" }}\nSENSITIVE_JP_MY_NUMBER = {{ weight = 0.0, group = \"info\" }}\nSENSITIVE_US_SSN = {{ weight = 0.0, group = \"info\" }}\nSENSITIVE_EMPLOYEE_ID = {{ weight = 0.0, group = \"info\" }}\n",
        dir.join("feed.txt").display()
    ));
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 15, "fixtures found: {}", paths.len());
    let mut triggered = BTreeSet::new();
    let mut problems = Vec::new();
    for path in &paths {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let message = std::fs::read(path).unwrap();
        let expect = std::fs::read_to_string(path.with_extension("expect")).unwrap();
        let out = p.run(
            &[
                "--config",
                config.to_str().unwrap(),
                "scan",
                "--json",
                "--ip",
                "192.0.2.9",
                "--helo",
                "mx.sender.test",
                "--to",
                "bob@example.com",
            ],
            &message,
        );
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let found: BTreeSet<String> = scan["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        for line in expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if let Some(symbol) = line.strip_prefix('+') {
                if !found.contains(symbol) {
                    problems.push(format!("{name}: {symbol} missing (found {found:?})"));
                }
            } else if let Some(symbol) = line.strip_prefix('-') {
                if found.contains(symbol) {
                    problems.push(format!("{name}: {symbol} found but must not be"));
                }
            } else if let Some(verdict) = line.strip_prefix("verdict ") {
                if scan["verdict"] != verdict {
                    problems.push(format!(
                        "{name}: verdict {} not {verdict} ({})",
                        scan["verdict"], scan["reason"]
                    ));
                }
            } else {
                panic!("{name}.expect: cannot read {line:?}");
            }
        }
        for symbol in &found {
            triggered.insert(symbol.clone());
        }
        // Every symbol shown says what triggered it and carries its registry weight and group.
        for symbol in scan["symbols"].as_array().unwrap() {
            assert!(
                symbol["group"].is_string() && symbol["weight"].is_number(),
                "{name}: {symbol}"
            );
        }
    }
    for symbol in COVERED {
        if !triggered.contains(*symbol) {
            problems.push(format!("no fixture triggers {symbol}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_mistyped_symbol_weight_is_an_error_that_names_the_symbol_meant() {
    let p = Portcullis::new();
    let config = p.write_config("[pipeline.symbols]\nSPF_SOFTFAILL = { weight = 2.0 }\n");
    let out = p.run(
        &["--config", config.to_str().unwrap(), "scan", "--offline"],
        b"From: a@b.test\r\n\r\nx\r\n",
    );
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("SPF_SOFTFAILL") && error.contains("closest: SPF_SOFTFAIL"),
        "{error}"
    );
}
