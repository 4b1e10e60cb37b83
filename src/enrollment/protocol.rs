//! The enrollment protocol, as both ends speak it: the plant (`plantd enroll`, in
//! [`crate::enrollment`]) and the hub (`crate::hub::enroll`), over HTTPS.
//!
//! 1. `GET` [`CA_PATH`], over a connection that proves nothing yet: the hub's CA, PEM. The plant
//!    sends nothing until the CA's SHA-256 equals the fingerprint its token carries (the
//!    token's format is [`crate::enrollment::make_token`]'s).
//! 2. `POST` [`ENROLL_PATH`] with an [`EnrollRequest`], over a connection verified against
//!    that CA: `201 Created` and an [`EnrollAnswer`], or an error status and an [`ErrorBody`].

use serde::{Deserialize, Serialize};

/// Where the hub serves its CA certificate.
pub const CA_PATH: &str = "/api/v1/enroll/ca";

/// Where a plant posts its enrollment.
pub const ENROLL_PATH: &str = "/api/v1/enroll";

/// A plant's enrollment: its one-time token and a PEM PKCS#10 certificate request. The hub
/// refuses any other field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    pub csr: String,
}

/// The hub's answer to an enrollment it accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct EnrollAnswer {
    /// The plant's name, as the token named it.
    pub plant: String,
    /// The plant's certificate, PEM, signed by the hub's CA.
    pub certificate: String,
    /// The hub's CA, PEM.
    pub ca: String,
    /// The hub's QUIC addresses (`host:port`), as it advertises them.
    pub quic: Vec<String>,
}

/// A refusal, as every hub HTTPS route words it: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// Stable, for programs (`bad_token`, `enrollment_refused`, …).
    pub code: String,
    /// For people: what is wrong and what to do.
    pub message: String,
    /// The request's field that is wrong, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(code: &str, message: String) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                field: None,
            },
        }
    }

    /// A refusal of one field of the request.
    pub fn field(code: &str, field: &str, message: String) -> ErrorBody {
        let mut body = ErrorBody::new(code, message);
        body.error.field = Some(field.to_string());
        body
    }
}

/// Whether `name` may name a plant: 1 to 64 letters, digits, '.', '_' or '-', not starting with
/// '.' (a plant's name is also its directory of backup copies at the hub).
pub fn is_plant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_read_as_the_other_end_writes_them() {
        let answer: EnrollAnswer = serde_json::from_str(
            r#"{"plant":"p1","certificate":"C","ca":"A","quic":["hub:4433"]}"#,
        )
        .unwrap();
        assert_eq!(answer.quic, ["hub:4433"]);
        let refusal = serde_json::to_value(ErrorBody::new("bad_token", "no".into())).unwrap();
        assert_eq!(
            refusal,
            serde_json::json!({"error": {"code": "bad_token", "message": "no"}})
        );
        let request: Result<EnrollRequest, _> = serde_json::from_str(r#"{"token":"t"}"#);
        assert!(request.is_err(), "a request without its csr is refused");
        let request: Result<EnrollRequest, _> =
            serde_json::from_str(r#"{"token":"t","csr":"c","plant":"p"}"#);
        assert!(request.is_err(), "a request with a field more is refused");
        for good in ["lyon", "Lyon-2.b_c", &"a".repeat(64)] {
            assert!(is_plant_name(good), "{good}");
        }
        for bad in ["", ".lyon", "ly on", "lyon\n", "lyon/x", &"a".repeat(65)] {
            assert!(!is_plant_name(bad), "{bad:?}");
        }
    }
}
