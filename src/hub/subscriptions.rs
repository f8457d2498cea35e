//! Active subscriptions (Mercure §"Active Subscriptions"): the subscription events published
//! when a subscription starts or ends, and the JSON-LD documents of the subscriptions API.
//!
//! Owns: subscription events and the API's documents. May call: `hub` (event, publish).
//!
//! Subscription events are ordinary private updates: they go through the sequencer like any
//! publish, so every core sees them in the one order and they resume like any event.

use serde::Serialize;
use serde_json::value::RawValue;

use super::event::Update;

/// Prefix of the subscriptions API and of subscription event topics.
pub const PATH: &str = "/.well-known/mercure/subscriptions";

/// What a core keeps about a subscriber for this feature (only when it is on).
#[derive(Debug)]
pub struct SubscriberInfo {
    /// `urn:uuid:…`, the same for all the subscriber's subscriptions.
    pub id: Box<str>,
    /// `mercure.payload` of its token, as JSON text.
    pub payload: Option<Box<str>>,
}

/// One subscription, as listed by a core (crosses cores in a listing).
#[derive(Debug, Clone)]
pub struct SubscriptionInfo {
    /// The topic selector.
    pub topic: String,
    /// The subscriber's id.
    pub subscriber: String,
    /// `mercure.payload`, as JSON text.
    pub payload: Option<String>,
}

/// The JSON-LD subscription document.
#[derive(Serialize)]
struct Subscription<'a> {
    #[serde(rename = "@context", skip_serializing_if = "Option::is_none")]
    context: Option<&'static str>,
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    topic: &'a str,
    subscriber: &'a str,
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(rename = "lastEventID", skip_serializing_if = "Option::is_none")]
    last_event_id: Option<&'a str>,
}

/// The JSON-LD collection document.
#[derive(Serialize)]
struct Collection<'a> {
    #[serde(rename = "@context")]
    context: &'static str,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "lastEventID")]
    last_event_id: &'a str,
    subscriptions: Vec<Subscription<'a>>,
}

const CONTEXT: &str = "https://mercure.rocks/";

/// Percent-encodes everything but unreserved characters (RFC 6570 simple expansion).
pub fn encode_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, expanded.
pub fn subscription_iri(topic: &str, subscriber: &str) -> String {
    format!(
        "{PATH}/{}/{}",
        encode_segment(topic),
        encode_segment(subscriber)
    )
}

fn document<'a>(
    topic: &'a str,
    subscriber: &'a str,
    payload: Option<&'a str>,
    active: bool,
    context: bool,
    last_event_id: Option<&'a str>,
) -> Subscription<'a> {
    Subscription {
        context: context.then_some(CONTEXT),
        id: subscription_iri(topic, subscriber),
        kind: "Subscription",
        topic,
        subscriber,
        active,
        payload: payload.and_then(|p| serde_json::from_str(p).ok()),
        last_event_id,
    }
}

/// The private update announcing that a subscription started (`active`) or ended.
pub fn event(topic: &str, info: &SubscriberInfo, active: bool) -> Update {
    let doc = document(topic, &info.id, info.payload.as_deref(), active, true, None);
    Update {
        topics: vec![doc.id.clone()],
        data: serde_json::to_string(&doc).unwrap_or_default(),
        id: super::publish::urn_uuid(),
        event_type: None,
        retry: None,
        private: true,
        generated_id: true,
    }
}

/// What a subscriptions API path asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Query {
    /// All subscriptions.
    All,
    /// The subscriptions with this topic selector.
    Topic(String),
    /// One subscription.
    One(String, String),
}

/// Parses the path after the API prefix; `None` when it is not an API path.
pub fn parse_path(path: &str) -> Option<Query> {
    let rest = path.strip_prefix(PATH)?;
    if rest.is_empty() || rest == "/" {
        return Some(Query::All);
    }
    let rest = rest.strip_prefix('/')?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    match rest.split_once('/') {
        None => Some(Query::Topic(decode(rest)?)),
        Some((t, s)) if !s.contains('/') && !s.is_empty() => {
            Some(Query::One(decode(t)?, decode(s)?))
        }
        _ => None,
    }
}

/// The API's JSON-LD answer for `query` over `all` subscriptions; `None` means 404.
pub fn render(
    path: &str,
    query: &Query,
    all: &[SubscriptionInfo],
    last_event_id: &str,
) -> Option<String> {
    let matching = all.iter().filter(|s| match query {
        Query::All => true,
        Query::Topic(t) => s.topic == *t,
        Query::One(t, id) => s.topic == *t && s.subscriber == *id,
    });
    if let Query::One(..) = query {
        let s = matching.into_iter().next()?;
        let doc = document(
            &s.topic,
            &s.subscriber,
            s.payload.as_deref(),
            true,
            true,
            Some(last_event_id),
        );
        return serde_json::to_string(&doc).ok();
    }
    let subscriptions = matching
        .map(|s| {
            document(
                &s.topic,
                &s.subscriber,
                s.payload.as_deref(),
                true,
                false,
                None,
            )
        })
        .collect();
    serde_json::to_string(&Collection {
        context: CONTEXT,
        id: path,
        kind: "Subscriptions",
        last_event_id,
        subscriptions,
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iri_encodes_reserved_characters() {
        assert_eq!(
            subscription_iri("https://example.com/{selector}", "urn:uuid:1"),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/urn%3Auuid%3A1"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path(PATH), Some(Query::All));
        assert_eq!(
            parse_path(&format!("{PATH}/https%3A%2F%2Fx%2F%7Bid%7D")),
            Some(Query::Topic("https://x/{id}".into()))
        );
        assert_eq!(
            parse_path(&format!("{PATH}/t/urn%3Auuid%3A1")),
            Some(Query::One("t".into(), "urn:uuid:1".into()))
        );
        assert_eq!(parse_path("/.well-known/mercure"), None);
        assert_eq!(parse_path(&format!("{PATH}/a/b/c")), None);
    }

    #[test]
    fn events_are_private_json_ld() {
        let info = SubscriberInfo {
            id: "urn:uuid:1".into(),
            payload: Some(r#"{"foo":"bar"}"#.into()),
        };
        let u = event("https://x/{id}", &info, true);
        assert!(u.private);
        assert_eq!(
            u.topics,
            vec![subscription_iri("https://x/{id}", "urn:uuid:1")]
        );
        let v: serde_json::Value = serde_json::from_str(&u.data).unwrap();
        assert_eq!(v["@context"], "https://mercure.rocks/");
        assert_eq!(v["type"], "Subscription");
        assert_eq!(v["topic"], "https://x/{id}");
        assert_eq!(v["active"], true);
        assert_eq!(v["payload"]["foo"], "bar");
        assert_eq!(v["id"], u.topics[0]);
    }

    #[test]
    fn collections_and_single_documents() {
        let all = vec![
            SubscriptionInfo {
                topic: "a".into(),
                subscriber: "s1".into(),
                payload: None,
            },
            SubscriptionInfo {
                topic: "b".into(),
                subscriber: "s1".into(),
                payload: None,
            },
        ];
        let doc = render(PATH, &Query::All, &all, "earliest").unwrap();
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["type"], "Subscriptions");
        assert_eq!(v["lastEventID"], "earliest");
        assert_eq!(v["subscriptions"].as_array().unwrap().len(), 2);
        let one = render("x", &Query::One("b".into(), "s1".into()), &all, "e1").unwrap();
        let v: serde_json::Value = serde_json::from_str(&one).unwrap();
        assert_eq!(
            (v["topic"].as_str(), v["lastEventID"].as_str()),
            (Some("b"), Some("e1"))
        );
        assert!(render("x", &Query::One("c".into(), "s1".into()), &all, "e1").is_none());
    }
}
