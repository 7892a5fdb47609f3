//! Clicks for Microsoft-centred teams: one JSON object per line with the columns of Defender for
//! Office 365's `UrlClickEvents` advanced-hunting table, so a Sentinel or Defender workbook built
//! on that table reads ours (`GET /api/v1/export/url-click-events`).

use std::collections::HashMap;

use bytes::Bytes;
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

use super::admin::{messages_of, recipient_of};
use super::{Api, Failure, blocking, failure, respond, store_unavailable};
use crate::clicklog::{Action, ClickEvent, ClickQuery, read_clicks};
use crate::redirect::Body;
use crate::store::IndexEntry;

/// The most lines one call returns; `X-Next-Cursor` carries on.
const MAX_LINES: usize = 10_000;

/// Defender's `ActionType` for what the click service did.
fn action_type(action: Action) -> &'static str {
    match action {
        Action::Permitted | Action::ClickedThrough => "ClickAllowed",
        Action::Blocked | Action::Warned => "ClickBlocked",
        Action::Rejected | Action::Expired => "UrlErrorPage",
        Action::Prefetch => "UrlScanInProgress",
        Action::Reported => "ClickBlocked",
    }
}

fn threat_types(category: &str) -> &'static str {
    match category {
        "phish" => "Phish",
        "malware" => "Malware",
        "spam" => "Spam",
        _ => "",
    }
}

fn line(click: &ClickEvent, messages: &HashMap<String, IndexEntry>) -> Value {
    let detection = match click.verdict.as_str() {
        "malicious" | "suspicious" => "URL reputation",
        _ if click.action == Action::Blocked => "Tenant policy",
        _ => "",
    };
    json!({
        "Timestamp": crate::time::rfc3339_millis(click.at_ms),
        "Url": click.url,
        "ActionType": action_type(click.action),
        "AccountUpn": recipient_of(click, messages).unwrap_or_default(),
        "Workload": "Email",
        "NetworkMessageId": click.message_ref,
        "ThreatTypes": threat_types(&click.category),
        "DetectionMethods": detection,
        "IPAddress": click.client_ip,
        "IsClickedThrough": click.action == Action::ClickedThrough,
        "UrlChain": [click.url.clone()],
        "ReportId": click.id,
    })
}

impl Api {
    pub(super) async fn url_click_events(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = super::admin::Params::parse(query, &["since", "until", "limit", "cursor"])?;
        let limit = match params.text("limit") {
            None => 1000,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LINES).contains(n))
                .ok_or_else(|| {
                    failure(
                        StatusCode::BAD_REQUEST,
                        "bad_parameter",
                        format!("limit: 1 to {MAX_LINES}"),
                    )
                })?,
        };
        let cursor = params.text("cursor");
        if cursor
            .as_ref()
            .is_some_and(|c| c.len() != 32 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                "cursor: not a cursor this API gave",
            ));
        }
        let click_query = ClickQuery {
            limit,
            since_ms: params.time_ms("since")?,
            until_ms: params.time_ms("until")?,
            before_id: cursor,
            ..ClickQuery::default()
        };
        let (store, data_dir) = (self.store.clone(), self.settings.data_dir.clone());
        let (clicks, messages) = blocking(move || {
            let clicks = read_clicks(&data_dir, &click_query)?;
            let messages = messages_of(&store, &clicks);
            Ok::<_, crate::clicklog::ClickLogError>((clicks, messages))
        })
        .await?
        .map_err(store_unavailable)?;
        let mut body = Vec::new();
        for click in &clicks {
            body.extend_from_slice(line(click, &messages).to_string().as_bytes());
            body.push(b'\n');
        }
        let mut response = respond(StatusCode::OK, "application/x-ndjson", Bytes::from(body));
        if clicks.len() == limit
            && let Some(last) = clicks.last()
            && let Ok(value) = header::HeaderValue::from_str(&last.id)
        {
            response.headers_mut().insert("x-next-cursor", value);
        }
        Ok(response)
    }
}
