//! The trained classifier through the command line and the running gateway: `portcullis train`
//! on directories, mbox files and the SpamAssassin corpus, `scan` using the model, and a gateway
//! picking up a model written while it runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::Portcullis;
use crate::gateway::{Sink, free_port, gateway_config, send_data_to_bob, start_gateway};

const SPAM_WORDS: &[&str] = &[
    "pharmacy",
    "discount",
    "pills",
    "cheapest",
    "guaranteed",
    "winner",
    "casino",
    "bonus",
    "deposit",
    "offer",
];
const HAM_WORDS: &[&str] = &[
    "meeting", "agenda", "minutes", "project", "review", "deadline", "draft", "budget", "schedule", "notes",
];

/// A message of `words`, varied by `i` so no two are the same.
fn message(i: usize, words: &[&str], sender: &str) -> String {
    let body: Vec<&str> = (0..40).map(|k| words[(i * 7 + k * 3) % words.len()]).collect();
    format!(
        "From: {sender}\r\nTo: bob@example.com\r\nSubject: {} {} {i}\r\nMessage-ID: <m{i}@x.test>\r\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n{}\r\n",
        words[i % words.len()],
        words[(i + 3) % words.len()],
        body.join(" ")
    )
}

/// Spam as a directory of `.eml` files, ham as one mbox file.
fn write_training_set(dir: &Path) -> (PathBuf, PathBuf) {
    let spam = dir.join("spam");
    std::fs::create_dir_all(&spam).unwrap();
    let mut mbox = String::new();
    for i in 0..40 {
        std::fs::write(
            spam.join(format!("{i}.eml")),
            message(i, SPAM_WORDS, "Deals <deals@offers.test>"),
        )
        .unwrap();
        mbox.push_str("From ann@partner.test Wed Nov 25 10:00:00 2026\n");
        mbox.push_str(&message(i, HAM_WORDS, "Ann <ann@partner.test>").replace("\r\n", "\n"));
        mbox.push('\n');
    }
    let ham = dir.join("ham.mbox");
    std::fs::write(&ham, mbox).unwrap();
    (spam, ham)
}

fn train(p: &Portcullis, spam: &Path, ham: &Path) -> std::process::Output {
    p.run(
        &[
            "train",
            "--spam",
            spam.to_str().unwrap(),
            "--ham",
            ham.to_str().unwrap(),
        ],
        b"",
    )
}

fn scan_symbols(p: &Portcullis, message: &str) -> Vec<String> {
    let out = p.run(&["scan", "--offline", "--json"], message.as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn train_reads_directories_and_mbox_files_and_scan_uses_the_model() {
    let p = Portcullis::new();
    let (spam, ham) = write_training_set(p.dir.path());
    let spammy = message(1000, SPAM_WORDS, "Deals <deals@offers.test>");
    assert!(
        !scan_symbols(&p, &spammy).iter().any(|s| s.starts_with("CLASSIFIER_")),
        "no model yet, no classifier symbol"
    );

    let out = train(&p, &spam, &ham);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("read 40 spam and 40 ham"), "{stderr}");
    assert!(
        stderr.contains("messages,") && stderr.contains("/s"),
        "progress shown: {stderr}"
    );
    assert!(stdout.contains("model written to"), "{stdout}");
    assert!(p.data_dir().join("classifier.model").exists());

    let symbols = scan_symbols(&p, &spammy);
    assert!(symbols.iter().any(|s| s.starts_with("CLASSIFIER_SPAM_")), "{symbols:?}");
    let hammy = message(1000, HAM_WORDS, "Ann <ann@partner.test>");
    let symbols = scan_symbols(&p, &hammy);
    assert!(symbols.iter().any(|s| s.starts_with("CLASSIFIER_HAM_")), "{symbols:?}");

    // Nothing to learn from is an error, and the model already there stays.
    let empty = p.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = train(&p, &empty, &ham);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to train on: 0 spam and 40 ham"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(p.data_dir().join("classifier.model").exists());
}

/// Trained on the even half of the SpamAssassin corpus, checked on the odd half: most spam is
/// caught with hardly any legitimate mail taken for spam. (`bench/detection.sh` measures the whole
/// gateway against SpamAssassin and rspamd; this keeps the classifier from quietly getting worse.)
#[test]
fn trained_on_half_the_corpus_it_separates_the_other_half() {
    let p = Portcullis::new();
    let data = crate::corpus::corpus_files()
        .first()
        .and_then(|f| f.parent()?.parent().map(Path::to_path_buf))
        .expect("corpus");
    let mut dirs = Vec::new();
    for half in ["train", "check"] {
        for class in ["spam", "ham"] {
            let dir = p.dir.path().join(half).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            dirs.push(dir);
        }
    }
    for group in ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(data.join(group))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|f| f.extension().is_some_and(|e| e == "txt"))
            .collect();
        names.sort();
        let class = usize::from(group.starts_with("easy") || group.starts_with("hard"));
        for (i, file) in names.iter().enumerate() {
            let dir = &dirs[(i % 2) * 2 + class];
            let link = dir.join(format!("{group}-{}", file.file_name().unwrap().to_string_lossy()));
            std::os::unix::fs::symlink(file, link).unwrap();
        }
    }
    let arg = |i: usize| dirs[i].to_str().unwrap().to_string();
    let out = p.run(
        &[
            "train",
            "--spam",
            &arg(0),
            "--ham",
            &arg(1),
            "--check-spam",
            &arg(2),
            "--check-ham",
            &arg(3),
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("p >= 0.9:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    // "p >= 0.9: 930/948 spam caught, 7/2075 ham taken for spam; …"
    let numbers: Vec<f64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (caught, spam, wrong, ham) = (numbers[2], numbers[3], numbers[4], numbers[5]);
    assert!(spam > 900.0 && ham > 2000.0, "{line}");
    assert!(caught / spam >= 0.95, "{line}");
    assert!(wrong / ham <= 0.01, "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_gateway_picks_up_a_new_model_without_a_restart() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", ""));
    let send = |i: usize| {
        send_data_to_bob(
            &smtp,
            "deals@offers.test",
            message(i, SPAM_WORDS, "Deals <deals@offers.test>"),
        )
    };
    // Per message: its reference and whether the classifier called it spam.
    let classified = |p: &Portcullis| -> Vec<(String, bool)> {
        let out = p.run(&["messages", "--json", "--limit", "0"], b"");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .map(|entry| {
                let spam = entry["symbols"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s.as_str().unwrap().starts_with("CLASSIFIER_SPAM_"));
                (entry["message_ref"].as_str().unwrap().to_string(), spam)
            })
            .collect()
    };
    send(500).await;
    let before = classified(&p);
    assert_eq!(before.len(), 1);
    assert!(!before[0].1, "no model, no classifier symbol");

    let (spam, ham) = write_training_set(p.dir.path());
    let out = train(&p, &spam, &ham);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 501;
    loop {
        send(i).await;
        if let Some((reference, _)) = classified(&p).into_iter().find(|(_, spam)| *spam) {
            // The index kept every symbol with its weight and what triggered it.
            let out = p.run(&["messages", "show", &reference], b"");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(text.contains(&format!("message {reference} received")), "{text}");
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with("CLASSIFIER_SPAM_"))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(line.contains("spam") && line.contains("p(spam)=0.9"), "{line}");
            assert!(
                line.contains("+7.00") || line.contains("+6.00") || line.contains("+3.00"),
                "{line}"
            );
            let missing = p.run(&["messages", "show", "nosuchref"], b"");
            assert!(!missing.status.success());
            assert!(String::from_utf8_lossy(&missing.stderr).contains("no message nosuchref in the index"));
            break;
        }
        assert!(Instant::now() < deadline, "the gateway never used the new model");
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
