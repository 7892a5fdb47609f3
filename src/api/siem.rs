//! The SIEM feeds, shaped like the Proofpoint TAP SIEM API v2 so the connectors that read TAP
//! (Splunk, Sentinel, Elastic, XSOAR) read us by changing only the base URL and credentials:
//! `GET /v2/siem/{clicks/blocked, clicks/permitted, messages/blocked, messages/delivered,
//! issues, all}` with HTTP Basic (a token's principal and secret), exactly one of `interval`,
//! `sinceSeconds` or `sinceTime` (at most an hour), `format=json|syslog`, `threatType`,
//! `threatStatus`; 204 when nothing happened. What counts as a threat: a click blocked or warned
//! at click time, a click through a warning, a permitted click on a link now judged suspicious or
//! malicious; a message held, refused or dropped, or a delivered one with a phish, malware or URL
//! reputation finding.

use std::net::IpAddr;

use bytes::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::admin::{messages_of, recipient_of};
use super::{Api, Failure, blocking, failure, json_response, respond, store_unavailable};
use crate::clicklog::{Action, ClickEvent, ClickQuery, read_clicks};
use crate::pipeline::symbols::Scores;
use crate::redirect::Body;
use crate::store::IndexEntry;
use crate::threats::ThreatStatus;
use crate::time::{parse_interval_millis, parse_rfc3339_millis, rfc3339_millis};
use crate::tokens::Role;
use crate::trace::MessageQuery;

/// The longest window one call covers, as TAP allows.
const MAX_WINDOW_MS: i64 = 3_600_000;

/// The most threat clicks one call reads. A window with more is refused with a clear error
/// (ask for a shorter one) rather than cut: a cut window would lose clicks for good.
const MAX_CLICKS: usize = 200_000;

/// The most messages of one kind a call returns; past it `queryEndTime` stops at the last one
/// returned, so a connector that carries on from there misses nothing.
const MAX_MESSAGES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    ClicksBlocked,
    ClicksPermitted,
    MessagesBlocked,
    MessagesDelivered,
    Issues,
    All,
}

impl Feed {
    fn parse(path: &str) -> Option<Feed> {
        Some(match path {
            "clicks/blocked" => Feed::ClicksBlocked,
            "clicks/permitted" => Feed::ClicksPermitted,
            "messages/blocked" => Feed::MessagesBlocked,
            "messages/delivered" => Feed::MessagesDelivered,
            "issues" => Feed::Issues,
            "all" => Feed::All,
            _ => return None,
        })
    }

    fn clicks_blocked(self) -> bool {
        matches!(self, Feed::ClicksBlocked | Feed::All)
    }
    fn clicks_permitted(self) -> bool {
        matches!(self, Feed::ClicksPermitted | Feed::Issues | Feed::All)
    }
    fn messages_blocked(self) -> bool {
        matches!(self, Feed::MessagesBlocked | Feed::All)
    }
    fn messages_delivered(self) -> bool {
        matches!(self, Feed::MessagesDelivered | Feed::Issues | Feed::All)
    }
}

/// A call's window and filters.
struct Window {
    start_ms: i64,
    end_ms: i64,
    syslog: bool,
    threat_types: Vec<String>,
    threat_statuses: Vec<String>,
}

fn bad(why: impl Into<String>) -> Failure {
    failure(StatusCode::BAD_REQUEST, "bad_parameter", why)
}

/// The shortest and longest window one call covers, as TAP allows.
const MIN_WINDOW_MS: i64 = 30_000;

/// A time as a query string carries it: a `+` of an offset sent unencoded arrives as a space.
fn time_param(text: &str) -> Option<i64> {
    let repaired = match text.get(19..) {
        Some(tail) if tail.contains(' ') => format!("{}{}", &text[..19], tail.replace(' ', "+")),
        _ => text.to_string(),
    };
    parse_rfc3339_millis(&repaired)
}

fn interval_param(text: &str) -> Option<(i64, i64)> {
    let (first, second) = text.split_once('/')?;
    let side = |part: &str| {
        time_param(part)
            .map(crate::time::rfc3339_millis)
            .unwrap_or_else(|| part.to_string())
    };
    parse_interval_millis(&format!("{}/{}", side(first), side(second)))
}

fn window(query: &str, now_ms: i64) -> Result<Window, Failure> {
    // sinceSeconds and sinceTime end at the server's time rounded down to the minute, as TAP's
    // do: the next call, starting at queryEndTime, picks up the rest of the minute.
    let minute_ms = now_ms - now_ms.rem_euclid(60_000);
    let mut range: Option<(i64, i64)> = None;
    let mut given = 0;
    let mut syslog = true;
    let mut threat_types = Vec::new();
    let mut threat_statuses = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "interval" => {
                given += 1;
                let (start, end) = interval_param(&value).ok_or_else(|| {
                    bad("interval: expected an ISO 8601 interval such as 2026-11-29T04:00:00Z/2026-11-29T05:00:00Z")
                })?;
                if !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&(end - start)) {
                    return Err(bad("interval: 30 seconds to one hour"));
                }
                range = Some((start, end));
            }
            "sinceSeconds" => {
                given += 1;
                let seconds: i64 = value
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or_else(|| bad("sinceSeconds: 1 to 3600"))?;
                range = Some((minute_ms - seconds * 1000, minute_ms));
            }
            "sinceTime" => {
                given += 1;
                let since = time_param(&value).ok_or_else(|| bad("sinceTime: expected an ISO 8601 time"))?;
                if minute_ms - since > MAX_WINDOW_MS {
                    return Err(bad("sinceTime: at most one hour ago"));
                }
                range = Some((since, minute_ms.max(since)));
            }
            "format" => {
                syslog = match value.to_ascii_lowercase().as_str() {
                    "syslog" => true,
                    "json" => false,
                    _ => return Err(bad("format: json or syslog")),
                }
            }
            // Repeated, or as a comma list: connectors send both.
            "threatType" => {
                for threat_type in value.split(',').map(str::trim) {
                    match threat_type {
                        "url" | "attachment" => threat_types.push(threat_type.to_string()),
                        "messageText" => threat_types.push("message".into()),
                        _ => return Err(bad("threatType: url, attachment or messageText")),
                    }
                }
            }
            "threatStatus" => {
                for status in value.split(',').map(str::trim) {
                    match status {
                        "active" | "cleared" | "falsePositive" => threat_statuses.push(status.to_string()),
                        _ => return Err(bad("threatStatus: active, cleared or falsePositive")),
                    }
                }
            }
            other => return Err(bad(format!("{other}: unknown parameter"))),
        }
    }
    let Some((start_ms, end_ms)) = range.filter(|_| given == 1) else {
        return Err(bad("give exactly one of interval, sinceSeconds or sinceTime"));
    };
    if threat_statuses.is_empty() {
        threat_statuses = vec!["active".into(), "cleared".into()];
    }
    Ok(Window {
        start_ms,
        end_ms: end_ms.min(now_ms),
        syslog,
        threat_types,
        threat_statuses,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Api {
    pub(super) async fn siem(
        &self,
        request: Request<hyper::body::Incoming>,
        feed: &str,
        client_ip: IpAddr,
    ) -> Result<Response<Body>, Failure> {
        let Some(feed) = Feed::parse(feed) else {
            return Err(super::not_found(request.uri().path()));
        };
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            let mut response = super::error_response(&failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the SIEM API takes GET",
            ));
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            return Ok(response);
        }
        let principal = self
            .authenticate(request.headers(), request.method(), client_ip, true)
            .await?;
        principal.require(Role::Viewer)?;
        let window = window(request.uri().query().unwrap_or(""), now_ms())?;
        let (store, data_dir) = (self.store.clone(), self.settings.data_dir.clone());
        let (start_ms, end_ms) = (window.start_ms, window.end_ms);
        let (clicks, indexed, messages, post_delivery, click_statuses) = blocking(move || -> Result<_, String> {
            let clicks = if feed.clicks_blocked() || feed.clicks_permitted() {
                read_clicks(
                    &data_dir,
                    &ClickQuery {
                        limit: MAX_CLICKS + 1,
                        since_ms: Some(start_ms),
                        until_ms: Some(end_ms),
                        threats_only: true,
                        ..ClickQuery::default()
                    },
                )
                .map_err(|e| e.to_string())?
            } else {
                Vec::new()
            };
            let indexed = messages_of(&store, &clicks);
            let messages = if feed.messages_blocked() || feed.messages_delivered() {
                store
                    .trace(&MessageQuery {
                        limit: MAX_MESSAGES,
                        since: Some(start_ms.div_euclid(1000)),
                        until: Some(end_ms.div_euclid(1000) + 1),
                        ..MessageQuery::default()
                    })
                    .map_err(|e| e.to_string())?
            } else {
                Vec::new()
            };
            // Post-delivery threats found in the window, with the delivered messages that carried
            // them, and the status of any threat recorded for a clicked link.
            let found = if feed.messages_delivered() {
                let threats = store
                    .threats(&crate::threats::ThreatQuery {
                        since_ms: Some(start_ms),
                        until_ms: Some(end_ms),
                        ..Default::default()
                    })
                    .map_err(|e| e.to_string())?;
                let mut found = Vec::new();
                for threat in threats {
                    let carried = store
                        .threat_messages(&threat, MAX_MESSAGES)
                        .map_err(|e| e.to_string())?;
                    found.push((threat, carried));
                }
                found
            } else {
                Vec::new()
            };
            let mut urls: Vec<String> = clicks.iter().map(|c| c.url.clone()).collect();
            urls.sort_unstable();
            urls.dedup();
            // Where several threats cover a link, the most severe status stands: a domain
            // marked a false positive does not hide a click on a link still active.
            let mut statuses: std::collections::HashMap<String, ThreatStatus> = std::collections::HashMap::new();
            for threat in store.threats_covering(&urls).map_err(|e| e.to_string())? {
                for url in urls.iter().filter(|url| threat.covers(url)) {
                    let status = statuses.entry(url.clone()).or_insert(threat.status);
                    if severity(threat.status) > severity(*status) {
                        *status = threat.status;
                    }
                }
            }
            Ok((clicks, indexed, messages, found, statuses))
        })
        .await?
        .map_err(store_unavailable)?;
        if clicks.len() > MAX_CLICKS {
            return Err(bad(format!(
                "more than {MAX_CLICKS} threat clicks in this window: ask for a shorter interval"
            )));
        }

        let mut clicks_blocked = Vec::new();
        let mut clicks_permitted = Vec::new();
        for click in clicks.iter().rev() {
            let Some(blocked) = click_threat(click) else {
                continue;
            };
            if !window.threat_types.is_empty() && !window.threat_types.iter().any(|t| t == "url") {
                continue;
            }
            let status = click_statuses.get(&click.url).map_or("active", |s| s.as_str());
            if !window.threat_statuses.iter().any(|s| s == status) {
                continue;
            }
            let mut event = click_event(click, recipient_of(click, &indexed), indexed.get(&click.message_ref));
            event["threatStatus"] = json!(status);
            if blocked && feed.clicks_blocked() {
                clicks_blocked.push(event);
            } else if !blocked && feed.clicks_permitted() {
                clicks_permitted.push(event);
            }
        }
        let mut messages_blocked = Vec::new();
        let mut messages_delivered = Vec::new();
        let mut query_end_ms = end_ms;
        if messages.len() >= MAX_MESSAGES
            && let Some(oldest) = messages.last()
        {
            // Everything at the oldest second returned may not all be here: end the window
            // just before it, and say so, so the next call starts there.
            query_end_ms = oldest.received_at * 1000;
        }
        for entry in messages.iter().rev() {
            if entry.received_at * 1000 >= query_end_ms && query_end_ms < end_ms {
                continue;
            }
            let threats = threats_of(entry);
            let threats: Vec<Value> = threats
                .into_iter()
                .filter(|threat| {
                    window.threat_types.is_empty()
                        || window
                            .threat_types
                            .iter()
                            .any(|t| threat["threatType"].as_str() == Some(t.as_str()))
                })
                .filter(|_| window.threat_statuses.iter().any(|s| s == "active"))
                .collect();
            // A message held and released later was still blocked when it arrived.
            let held = matches!(entry.verdict.as_str(), "quarantine" | "reject" | "discard" | "released");
            if held && feed.messages_blocked() && (!threats.is_empty() || window.threat_types.is_empty()) {
                messages_blocked.push(message_event(entry, threats));
            } else if !held && !threats.is_empty() && feed.messages_delivered() {
                messages_delivered.push(message_event(entry, threats));
            }
        }
        // A message found to carry a threat after delivery is reported again, as TAP does, in
        // the window the threat was found in.
        let mut delivered_at: std::collections::HashMap<String, usize> = messages_delivered
            .iter()
            .enumerate()
            .filter_map(|(i, event)| event["GUID"].as_str().map(|guid| (guid.to_string(), i)))
            .collect();
        for (threat, carried) in &post_delivery {
            // Past a cut-short window's end it comes with the next call.
            if threat.found_at_ms >= query_end_ms
                || !window.threat_statuses.iter().any(|s| s == threat.status.as_str())
                || !(window.threat_types.is_empty() || window.threat_types.iter().any(|t| t == "url"))
            {
                continue;
            }
            let info = json!({
                "threatID": threat_id(&threat.target),
                "threatStatus": threat.status.as_str(),
                "classification": classification(&threat.category),
                "threatUrl": null,
                "threatTime": rfc3339_millis(threat.found_at_ms),
                "threat": threat.target,
                "campaignID": null,
                "threatType": "url",
            });
            for entry in carried {
                match delivered_at.get(&entry.message_ref) {
                    Some(&i) => {
                        if let Some(map) = messages_delivered[i]["threatsInfoMap"].as_array_mut()
                            && !map.iter().any(|known| known["threatID"] == info["threatID"])
                        {
                            map.push(info.clone());
                        }
                    }
                    None if messages_delivered.len() < MAX_MESSAGES => {
                        delivered_at.insert(entry.message_ref.clone(), messages_delivered.len());
                        messages_delivered.push(message_event(entry, vec![info.clone()]));
                    }
                    None => {}
                }
            }
        }
        let total = clicks_blocked.len() + clicks_permitted.len() + messages_blocked.len() + messages_delivered.len();
        if total == 0 && (window.syslog || !self.settings.siem_empty_envelope) {
            return Ok(respond(StatusCode::NO_CONTENT, "application/json", Bytes::new()));
        }
        let query_end_time = crate::time::rfc3339(query_end_ms.div_euclid(1000));
        if window.syslog {
            let mut text = String::new();
            for (code, time_field, events) in [
                ("CLKBLK", "clickTime", &clicks_blocked),
                ("CLKPER", "clickTime", &clicks_permitted),
                ("MSGBLK", "messageTime", &messages_blocked),
                ("MSGDLV", "messageTime", &messages_delivered),
            ] {
                for event in events {
                    text.push_str(&syslog_line(code, time_field, event));
                    text.push('\n');
                }
            }
            return Ok(respond(StatusCode::OK, "text/plain; charset=utf-8", Bytes::from(text)));
        }
        let mut envelope = serde_json::Map::new();
        envelope.insert("queryEndTime".into(), Value::String(query_end_time));
        if feed.clicks_permitted() {
            envelope.insert("clicksPermitted".into(), Value::Array(clicks_permitted));
        }
        if feed.clicks_blocked() {
            envelope.insert("clicksBlocked".into(), Value::Array(clicks_blocked));
        }
        if feed.messages_delivered() {
            envelope.insert("messagesDelivered".into(), Value::Array(messages_delivered));
        }
        if feed.messages_blocked() {
            envelope.insert("messagesBlocked".into(), Value::Array(messages_blocked));
        }
        json_response(StatusCode::OK, &Value::Object(envelope))
    }
}

/// Whether a click is a threat event: `Some(true)` blocked, `Some(false)` permitted.
fn click_threat(click: &ClickEvent) -> Option<bool> {
    match click.action {
        Action::Blocked | Action::Warned => Some(true),
        Action::ClickedThrough => Some(false),
        Action::Permitted if matches!(click.verdict.as_str(), "malicious" | "suspicious") => Some(false),
        _ => None,
    }
}

/// How much a threat status still calls for attention.
fn severity(status: ThreatStatus) -> u8 {
    match status {
        ThreatStatus::Active => 2,
        ThreatStatus::Cleared => 1,
        ThreatStatus::FalsePositive => 0,
    }
}

/// The threat's classification as TAP names them.
fn classification(category: &str) -> &'static str {
    match category {
        "phish" => "phish",
        "malware" => "malware",
        "spam" => "spam",
        _ => "phish",
    }
}

/// A stable id for a threat (TAP's `threatID` is a SHA-256 of the threat).
fn threat_id(threat: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::pipeline::hex(&Sha256::digest(threat.as_bytes()))
}

fn click_event(click: &ClickEvent, recipient: Option<String>, message: Option<&IndexEntry>) -> Value {
    let time = rfc3339_millis(click.at_ms);
    json!({
        "campaignId": null,
        "classification": classification(&click.category),
        "clickIP": click.client_ip,
        "clickTime": time,
        "GUID": click.message_ref,
        "id": click.id,
        "messageID": message.and_then(|m| m.message_id.clone()).unwrap_or_default(),
        "recipient": recipient.unwrap_or_default(),
        "sender": message.map(|m| m.sender.clone()).unwrap_or_default(),
        "senderIP": message.map(|m| m.client_ip.clone()).unwrap_or_default(),
        "threatID": threat_id(&click.url),
        "threatTime": time,
        "threatURL": null,
        "threatStatus": "active",
        "url": click.url,
        "userAgent": click.user_agent,
        // Ours, beside TAP's.
        "x-portcullis-action": click.action.as_str(),
        "x-portcullis-verdict": click.verdict,
    })
}

/// The threats found in a message, as TAP's `threatsInfoMap` entries: links with a reputation
/// finding, malware, and phishing content.
fn threats_of(entry: &IndexEntry) -> Vec<Value> {
    let time = rfc3339_millis(entry.received_at * 1000);
    let mut threats = Vec::new();
    let mut push = |threat_type: &str, threat: String, classification: &str| {
        threats.push(json!({
            "threatID": threat_id(&threat),
            "threatStatus": "active",
            "classification": classification,
            "threatUrl": null,
            "threatTime": time,
            "threat": threat,
            "campaignID": null,
            "threatType": threat_type,
        }));
    };
    for symbol in &entry.weighed {
        let name = symbol.name.as_str();
        if name.starts_with("URL_REPUTATION_") {
            let class = if name.contains("MALWARE") { "malware" } else { "phish" };
            push("url", symbol.detail.clone(), class);
        } else if symbol.group == "malware" && symbol.weight > 0.0 {
            push("attachment", symbol.detail.clone(), "malware");
        } else if symbol.group == "phish" && symbol.weight > 0.0 {
            push("message", format!("{}: {}", symbol.name, symbol.detail), "phish");
        } else if symbol.group == "spoof" && symbol.weight > 0.0 {
            push(
                "message",
                entry.from_address.clone().unwrap_or_else(|| symbol.name.clone()),
                "impostor",
            );
        }
    }
    threats
}

fn message_event(entry: &IndexEntry, threats: Vec<Value>) -> Value {
    let scores = Scores::of_weighed(&entry.weighed);
    // TAP's scores run 0 to 100; ours are sums of weights around a threshold of 5 to 15.
    let score = |value: f64| (value.max(0.0) * 10.0).round().min(100.0) as i64;
    let recipients: Vec<String> = entry.recipients.iter().map(|r| r.address.clone()).collect();
    let blocked = matches!(entry.verdict.as_str(), "quarantine" | "reject" | "discard" | "released");
    json!({
        "GUID": entry.message_ref,
        "QID": entry.message_ref,
        "id": entry.message_ref,
        "messageID": entry.message_id.clone().unwrap_or_default(),
        "messageTime": rfc3339_millis(entry.received_at * 1000),
        "messageSize": entry.size,
        "subject": entry.subject,
        "sender": entry.sender,
        "senderIP": entry.client_ip,
        "headerFrom": entry.from_address,
        "headerReplyTo": null,
        "fromAddress": entry.from_address.iter().collect::<Vec<_>>(),
        "toAddresses": recipients,
        "ccAddresses": [],
        "replyToAddress": [],
        "recipient": recipients,
        "xmailer": null,
        "spamScore": score(scores.spam),
        "phishScore": score(scores.phish),
        "impostorScore": score(scores.impostor),
        "malwareScore": score(scores.malware),
        "threatsInfoMap": threats,
        "messageParts": [],
        "completelyRewritten": !blocked,
        "quarantineFolder": if matches!(entry.verdict.as_str(), "quarantine" | "released") { entry.category.clone() } else { None },
        "quarantineRule": if blocked { entry.rule.clone().or_else(|| entry.category.clone()) } else { None },
        "modulesRun": ["portcullis"],
        "policyRoutes": ["default_inbound"],
        "cluster": "portcullis",
        // Ours, beside TAP's.
        "x-portcullis-verdict": entry.verdict,
        "x-portcullis-details": entry.details,
    })
}

/// One event as TAP's syslog format gives it: an RFC 5424 line with app name `ProofpointTAP`,
/// the event code as message id, and the fields as `key="value"` (arrays and objects as escaped
/// JSON, nulls as the bare word).
fn syslog_line(code: &str, time_field: &str, event: &Value) -> String {
    let time = event[time_field]
        .as_str()
        .and_then(parse_rfc3339_millis)
        .map_or_else(|| "-".to_string(), |ms| crate::time::rfc3339(ms.div_euclid(1000)));
    let mut line = format!("<14>1 {time} - ProofpointTAP - {code} -");
    if let Value::Object(fields) = event {
        for (name, value) in fields {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Null => {
                    line.push_str(&format!(" {name}=null"));
                    continue;
                }
                other => other.to_string(),
            };
            let escaped = text
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace(['\r', '\n'], " ");
            line.push_str(&format!(" {name}=\"{escaped}\""));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_window_of_at_most_an_hour() {
        let now = parse_rfc3339_millis("2026-11-29T05:00:00Z").unwrap();
        let w = window("interval=2026-11-29T04:00:00Z/2026-11-29T05:00:00Z&format=json", now).unwrap();
        assert_eq!((w.start_ms, w.end_ms, w.syslog), (now - 3_600_000, now, false));
        assert!(window("interval=2026-11-29T03:00:00Z/2026-11-29T05:00:00Z", now).is_err());
        assert!(window("sinceSeconds=3601", now).is_err());
        assert_eq!(window("sinceSeconds=60", now).unwrap().start_ms, now - 60_000);
        assert!(window("sinceSeconds=60&sinceTime=2026-11-29T04:30:00Z", now).is_err());
        assert!(window("", now).is_err());
        assert!(window("sinceTime=2026-11-29T03:59:00Z", now).is_err());
        assert!(window("sinceSeconds=60&format=xml", now).is_err());
        assert!(window("sinceSeconds=60&threatType=dns", now).is_err());
        // At least 30 seconds; an offset's unencoded `+` arrives as a space.
        assert!(window("interval=2026-11-29T04:59:50Z/2026-11-29T05:00:00Z", now).is_err());
        let offset = window("interval=2026-11-29T13:00:00+09:00/2026-11-29T14:00:00+09:00", now).unwrap();
        assert_eq!((offset.start_ms, offset.end_ms), (now - 3_600_000, now));
        // sinceSeconds ends at the minute, and the threat filters take lists.
        let w = window(
            "sinceSeconds=120&threatType=url,messageText&threatStatus=active",
            now + 42_000,
        )
        .unwrap();
        assert_eq!((w.start_ms, w.end_ms), (now - 120_000, now));
        assert_eq!(w.threat_types, ["url", "message"]);
        assert_eq!(w.threat_statuses, ["active"]);
    }
}
