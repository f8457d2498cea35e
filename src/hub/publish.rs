//! ③ Publish: turn a form body into a validated [`Update`].
//!
//! Owns: the publish form's rules. May call: `http` (forms), `error`.

use crate::error::HttpError;
use crate::http::parse_form;

use super::event::Update;

/// Parses and validates a publish body (`application/x-www-form-urlencoded`).
pub fn parse_update(body: &[u8], max_topics: usize) -> Result<Update, HttpError> {
    let mut u = Update::default();
    let mut custom_id = None;
    for (name, value) in parse_form(body)? {
        match name.as_str() {
            "topic" => {
                if u.topics.len() == max_topics {
                    return Err(HttpError::BadParam(format!(
                        "too many \"topic\" parameters (at most {max_topics})"
                    )));
                }
                u.topics.push(value);
            }
            "data" => u.data = value,
            "id" => custom_id = Some(value),
            "type" => u.event_type = Some(value),
            "retry" => {
                u.retry = Some(value.parse().map_err(|_| {
                    HttpError::BadParam("\"retry\" must be a non-negative integer".into())
                })?)
            }
            "private" => u.private = true,
            _ => {}
        }
    }
    if u.topics.is_empty() {
        return Err(HttpError::BadParam("missing \"topic\" parameter".into()));
    }
    if u.topics.iter().any(|t| t.is_empty()) {
        return Err(HttpError::BadParam("empty \"topic\" parameter".into()));
    }
    if let Some(t) = &u.event_type {
        if t.is_empty() || has_line_break(t) {
            return Err(HttpError::BadParam(
                "\"type\" must be non-empty, without CR, LF or NUL".into(),
            ));
        }
    }
    u.generated_id = custom_id.is_none();
    u.id = match custom_id {
        Some(id) if id.is_empty() => {
            return Err(HttpError::BadParam("\"id\" must not be empty".into()))
        }
        Some(id) if id.starts_with('#') => {
            return Err(HttpError::BadParam("\"id\" must not start with '#'".into()))
        }
        Some(id) if has_line_break(&id) => {
            return Err(HttpError::BadParam(
                "\"id\" must not contain CR, LF or NUL".into(),
            ))
        }
        Some(id) if id == "earliest" => {
            return Err(HttpError::BadParam("\"earliest\" is a reserved id".into()))
        }
        Some(id) => id,
        None => urn_uuid(),
    };
    Ok(u)
}

/// A fresh `urn:uuid:` IRI (a version 4 UUID) for an event or a subscriber. The random bits
/// come from the core's own fast generator (`fastrand`, seeded once per thread), not from a
/// `getrandom(2)` call per publish: the ids must be unique, not secret (a subscriber sees
/// them, and nothing is authorized by knowing one).
pub fn urn_uuid() -> String {
    let uuid = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut out = String::with_capacity(45);
    out.push_str("urn:uuid:");
    out.push_str(
        uuid.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    out
}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_update() {
        let u = parse_update(
            b"topic=a&topic=b&data=x%0Ay&id=my-1&type=ping&retry=100&private=on",
            8,
        )
        .unwrap();
        assert_eq!(u.topics, vec!["a", "b"]);
        assert_eq!(u.data, "x\ny");
        assert_eq!(u.id, "my-1");
        assert_eq!(u.event_type.as_deref(), Some("ping"));
        assert_eq!(u.retry, Some(100));
        assert!(u.private);
    }

    #[test]
    fn generated_ids_are_uuid_urns() {
        let u = parse_update(b"topic=a", 8).unwrap();
        assert!(
            u.id.starts_with("urn:uuid:") && u.id.len() == 45,
            "{}",
            u.id
        );
    }

    #[test]
    fn refusals() {
        for body in [
            &b"data=x"[..],
            b"topic=a&id=%23frag",
            b"topic=a&id=a%0Ab",
            b"topic=a&type=a%0Db",
            b"topic=a&id=x%00",
            b"topic=a&retry=-1",
            b"topic=a&topic=b&topic=c",
            b"topic=",
        ] {
            assert!(
                matches!(parse_update(body, 2), Err(HttpError::BadParam(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
