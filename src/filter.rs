//! `portcullis filter`: the after-queue content filter for an MTA that runs a command per message
//! (Postfix `content_filter` through `pipe(8)`). It reads one message from stdin, hands it to the
//! running server's `/api/v1/rewrite` (so the decision, the index and the quarantine are the
//! server's, warm and in one store), and puts the rewritten copy back into the MTA with its
//! `sendmail -G -i` — or on stdout. The exit status is what `sysexits.h` and the MTA expect:
//! 0 done (delivered, held or discarded), 65 a message we will never take (the MTA bounces it),
//! 75 try again later (server down, busy, refused token: the MTA keeps the message queued).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `EX_OK`, `EX_DATAERR`, `EX_TEMPFAIL` from `sysexits.h`.
pub const EX_OK: u8 = 0;
pub const EX_DATAERR: u8 = 65;
pub const EX_TEMPFAIL: u8 = 75;

/// Where the copy goes.
pub enum Output {
    /// Run this command with `-f <sender> -- <recipients>` appended, the copy on its stdin.
    Reinject(Vec<String>),
    Stdout,
}

pub struct FilterRequest {
    /// The admin listener's base URL (`http://127.0.0.1:8026`).
    pub api: String,
    pub token: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub client_ip: Option<String>,
    pub helo: Option<String>,
    pub timeout: Duration,
    pub output: Output,
}

/// What happened, for the exit status and a line on stderr (which `pipe(8)` quotes in its
/// defer or bounce reason).
pub struct Filtered {
    pub status: u8,
    pub said: String,
}

fn done(status: u8, said: impl Into<String>) -> Filtered {
    Filtered {
        status,
        said: said.into(),
    }
}

/// Filters one message. Never panics on what the server or the MTA says; every failure maps to
/// an exit status.
pub fn run(request: &FilterRequest, message: Vec<u8>) -> Filtered {
    if message.is_empty() {
        return done(EX_DATAERR, "empty message on stdin");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return done(EX_TEMPFAIL, format!("cannot start: {error}")),
    };
    let answer = runtime.block_on(call(request, message));
    let (status, headers, body) = match answer {
        Ok(answer) => answer,
        Err(error) => return done(EX_TEMPFAIL, format!("Portcullis API unreachable: {error}")),
    };
    if status != 200 {
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| value["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
        // Only what is wrong with the message itself is permanent; anything about us or the
        // server waits in the MTA's queue for an operator.
        let permanent = matches!(code.as_str(), "body_too_large" | "not_a_message" | "empty_body");
        return done(
            if permanent { EX_DATAERR } else { EX_TEMPFAIL },
            format!("Portcullis API answered {status}: {text}"),
        );
    }
    let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
    let verdict = header("portcullis-verdict");
    let message_ref = header("portcullis-message-ref");
    match verdict.as_str() {
        "deliver" => {}
        "quarantine" => {
            return done(
                EX_OK,
                format!(
                    "held in quarantine ({}) as {message_ref}",
                    header("portcullis-category")
                ),
            );
        }
        "discard" => return done(EX_OK, format!("discarded by a transport rule as {message_ref}")),
        // `after_queue` makes the server hold what it would refuse; a refusal here is a server
        // that does not know that: keep the message queued rather than bounce it.
        other => return done(EX_TEMPFAIL, format!("unexpected verdict {other:?} for {message_ref}")),
    }
    match &request.output {
        Output::Stdout => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&body).and_then(|()| stdout.flush()) {
                Ok(()) => done(EX_OK, format!("passed on as {message_ref}")),
                Err(error) => done(EX_TEMPFAIL, format!("cannot write the message: {error}")),
            }
        }
        Output::Reinject(command) => reinject(command, request, &body, &message_ref),
    }
}

async fn call(
    request: &FilterRequest,
    message: Vec<u8>,
) -> Result<(u16, std::collections::HashMap<String, String>, bytes::Bytes), String> {
    let mut url = url::Url::parse(&format!("{}/api/v1/rewrite", request.api.trim_end_matches('/')))
        .map_err(|e| format!("--api: {e}"))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("after_queue", "true");
        query.append_pair("sender", &request.sender);
        for recipient in &request.recipients {
            query.append_pair("recipient", recipient);
        }
        if let Some(ip) = request
            .client_ip
            .as_deref()
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        {
            query.append_pair("client_ip", ip);
        }
        if let Some(helo) = request.helo.as_deref().filter(|helo| !helo.is_empty()) {
            query.append_pair("helo", helo);
        }
    }
    let client = reqwest::Client::builder()
        .timeout(request.timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(url)
        .bearer_auth(&request.token)
        .header("content-type", "message/rfc822")
        .body(message)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, headers, body))
}

fn reinject(command: &[String], request: &FilterRequest, message: &[u8], message_ref: &str) -> Filtered {
    let Some((program, arguments)) = command.split_first() else {
        return done(EX_TEMPFAIL, "no reinjection command");
    };
    let child = Command::new(program)
        .args(arguments)
        .arg("-f")
        .arg(&request.sender)
        .arg("--")
        .args(&request.recipients)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return done(EX_TEMPFAIL, format!("cannot run {program}: {error}")),
    };
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(message))
        .unwrap_or(Ok(()));
    let output = match child.wait_with_output() {
        Ok(output) => output,
        Err(error) => return done(EX_TEMPFAIL, format!("{program}: {error}")),
    };
    if let Err(error) = written {
        return done(EX_TEMPFAIL, format!("writing to {program}: {error}"));
    }
    if output.status.success() {
        done(EX_OK, format!("passed on as {message_ref}"))
    } else {
        // The message is in our index but not reinjected: the MTA tries again (a duplicate index
        // entry is better than a lost message).
        done(
            EX_TEMPFAIL,
            format!(
                "{program} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        )
    }
}
