//! A refused input, named by its field: what config validation and payload checks return. The
//! bottom layer: it uses nothing of plantd's. Who shows it decides how (`plant.toml:LINE:
//! field: message`, an HTTP 422 body with its `field`, a log line).

/// A refused input: where (a field path such as `payload.values.qty` or `stack.odoo.image`) and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_field_then_the_message() {
        let e = FieldError::new("http.idle_timeout", "\"0s\" is out of range");
        assert_eq!(e.to_string(), "http.idle_timeout: \"0s\" is out of range");
    }
}
