//! Checks a request body field by field and turns it into journal entries.
//!
//! Pure: no I/O, so every rule is table-tested below. Errors name the field as a device's
//! developer would find it: `key`, or `[3].payload` inside an array.

use serde_json::{Map, Value};

use super::{ApiError, MAX_ITEMS};
use crate::journal::NewTransaction;

/// Longest `key` and `kind`, in characters (as the document's `maxLength` counts them).
pub const MAX_KEY: usize = 128;
pub const MAX_KIND: usize = 128;

const FIELDS: [&str; 4] = ["key", "kind", "payload", "occurred_at"];

/// Validates a parsed body: one transaction object, or an array of 1 to 1000 of them.
/// Returns the entries and whether the body was an array.
pub fn transactions(body: Value, device: &str) -> Result<(Vec<NewTransaction>, bool), ApiError> {
    match body {
        Value::Object(obj) => Ok((vec![transaction(obj, device, "")?], false)),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::Invalid {
                    code: "empty_array",
                    field: None,
                    message: "the array holds no transactions; send at least one".into(),
                });
            }
            if items.len() > MAX_ITEMS {
                return Err(ApiError::TooManyItems(items.len()));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let prefix = format!("[{i}].");
                match item {
                    Value::Object(obj) => out.push(transaction(obj, device, &prefix)?),
                    _ => {
                        return Err(ApiError::invalid(
                            "invalid_field",
                            format!("[{i}]"),
                            format!("item {i} must be a transaction object"),
                        ))
                    }
                }
            }
            Ok((out, true))
        }
        _ => Err(ApiError::Invalid {
            code: "invalid_body",
            field: None,
            message: "the body must be a transaction object or an array of them".into(),
        }),
    }
}

fn transaction(
    mut obj: Map<String, Value>,
    device: &str,
    prefix: &str,
) -> Result<NewTransaction, ApiError> {
    let name = |f: &str| format!("{prefix}{f}");
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            "unknown_field",
            name(unknown),
            format!(
                "unknown field {unknown:?}; a transaction has key, kind, payload and occurred_at"
            ),
        ));
    }
    let key = text(&mut obj, "key", MAX_KEY, &name)?;
    let kind = text(&mut obj, "kind", MAX_KIND, &name)?;
    let payload = match obj.remove("payload") {
        None => {
            return Err(ApiError::invalid(
                "missing_field",
                name("payload"),
                "payload is missing; send the transaction's data as a JSON object",
            ))
        }
        Some(Value::Object(p)) => Value::Object(p).to_string(),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_field",
                name("payload"),
                "payload must be a JSON object",
            ))
        }
    };
    let occurred_at = match obj.remove("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    ApiError::invalid(
                        "invalid_field",
                        name("occurred_at"),
                        format!("occurred_at {s:?} is not an RFC 3339 time such as \"2026-11-27T08:30:00Z\""),
                    )
                })?;
            Some(s)
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_field",
                name("occurred_at"),
                "occurred_at must be an RFC 3339 time string such as \"2026-11-27T08:30:00Z\"",
            ))
        }
    };
    Ok(NewTransaction {
        key,
        device: device.to_string(),
        kind,
        payload,
        occurred_at,
    })
}

/// A required, non-empty string field of at most `max` characters without control characters.
fn text(
    obj: &mut Map<String, Value>,
    field: &str,
    max: usize,
    name: &dyn Fn(&str) -> String,
) -> Result<String, ApiError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Err(ApiError::invalid(
            "missing_field",
            name(field),
            format!("{field} is missing"),
        )),
        Some(Value::String(s)) if s.is_empty() => Err(ApiError::invalid(
            "empty_field",
            name(field),
            format!("{field} is empty"),
        )),
        Some(Value::String(s)) if s.chars().count() > max => Err(ApiError::invalid(
            "field_too_long",
            name(field),
            format!(
                "{field} is {} characters; the limit is {max}",
                s.chars().count()
            ),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(ApiError::invalid(
            "invalid_field",
            name(field),
            format!("{field} contains control characters"),
        )),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::invalid(
            "invalid_field",
            name(field),
            format!("{field} must be a string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(body: Value) -> (String, Option<String>) {
        match transactions(body, "d").unwrap_err() {
            ApiError::Invalid { code, field, .. } => (code.to_string(), field),
            ApiError::TooManyItems(_) => ("too_many_items".into(), None),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn accepts_an_object_and_an_array() {
        let (one, arr) = transactions(
            json!({"key": "k", "kind": "scan", "payload": {"b": 1, "a": 2}, "occurred_at": "2026-11-27T08:30:00+01:00"}),
            "scanner",
        )
        .unwrap();
        assert!(!arr);
        assert_eq!(one[0].device, "scanner");
        assert_eq!(one[0].payload, r#"{"a":2,"b":1}"#, "payload is canonical");
        let (many, arr) = transactions(
            json!([{"key": "a", "kind": "k", "payload": {}}, {"key": "b", "kind": "k", "payload": {}}]),
            "d",
        )
        .unwrap();
        assert!(arr);
        assert_eq!(many.len(), 2);
    }

    #[test]
    fn refusals_name_code_and_field() {
        let long = "x".repeat(MAX_KEY + 1);
        let cases = vec![
            (
                json!({"kind": "k", "payload": {}}),
                "missing_field",
                Some("key"),
            ),
            (
                json!({"key": "", "kind": "k", "payload": {}}),
                "empty_field",
                Some("key"),
            ),
            (
                json!({"key": 5, "kind": "k", "payload": {}}),
                "invalid_field",
                Some("key"),
            ),
            (
                json!({"key": long, "kind": "k", "payload": {}}),
                "field_too_long",
                Some("key"),
            ),
            (
                json!({"key": "a\nb", "kind": "k", "payload": {}}),
                "invalid_field",
                Some("key"),
            ),
            (
                json!({"key": "k", "payload": {}}),
                "missing_field",
                Some("kind"),
            ),
            (
                json!({"key": "k", "kind": "k"}),
                "missing_field",
                Some("payload"),
            ),
            (
                json!({"key": "k", "kind": "k", "payload": [1]}),
                "invalid_field",
                Some("payload"),
            ),
            (
                json!({"key": "k", "kind": "k", "payload": {}, "occurred_at": "yesterday"}),
                "invalid_field",
                Some("occurred_at"),
            ),
            (
                json!({"key": "k", "kind": "k", "payload": {}, "extra": 1}),
                "unknown_field",
                Some("extra"),
            ),
            (json!([]), "empty_array", None),
            (json!("text"), "invalid_body", None),
            (
                json!([{"key": "a", "kind": "k", "payload": {}}, 7]),
                "invalid_field",
                Some("[1]"),
            ),
            (
                json!([{"key": "a", "kind": "k", "payload": {}}, {"key": "b", "payload": {}}]),
                "missing_field",
                Some("[1].kind"),
            ),
        ];
        for (body, code, field) in cases {
            let got = refusal(body.clone());
            assert_eq!(got, (code.to_string(), field.map(String::from)), "{body}");
        }
        let too_many = Value::Array(vec![
            json!({"key": "a", "kind": "k", "payload": {}});
            MAX_ITEMS + 1
        ]);
        assert_eq!(refusal(too_many).0, "too_many_items");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,140}".prop_map(Value::String),
            prop_oneof![
                Just("key"),
                Just("kind"),
                Just("payload"),
                Just("occurred_at")
            ]
            .prop_map(|s| Value::String(s.into())),
            Just(Value::String("2026-11-27T08:30:00Z".into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("key".to_string()),
                        Just("kind".to_string()),
                        Just("payload".to_string()),
                        Just("occurred_at".to_string()),
                        "[a-z_]{1,10}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any JSON body is either accepted as well-formed transactions or refused with a
        /// client error; never a panic, never something half-checked.
        #[test]
        fn any_body_is_accepted_whole_or_refused_precisely(body in json_value()) {
            match transactions(body, "dev") {
                Ok((items, _)) => {
                    prop_assert!(!items.is_empty() && items.len() <= MAX_ITEMS);
                    for t in items {
                        prop_assert!(!t.key.is_empty() && t.key.chars().count() <= MAX_KEY);
                        prop_assert!(!t.kind.is_empty() && t.kind.chars().count() <= MAX_KIND);
                        let payload_is_object = t.payload.starts_with('{');
                        prop_assert!(payload_is_object);
                    }
                }
                Err(ApiError::Invalid { message, .. }) => prop_assert!(!message.is_empty()),
                Err(ApiError::TooManyItems(_)) => {}
                Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
            }
        }
    }
}
