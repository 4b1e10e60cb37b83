//! Reading a transaction's payload: `odoo.create`'s model and values, a custom kind's fields
//! by its mapping, and the cells, ids, names and external ids they hold, each refusal naming
//! the payload field.

use serde_json::{Map, Value};

use super::mapping::{method_name, model_name, Cell, RecordSource, Ref, Source, Step};
use super::ValueError;
use crate::field::FieldError;

/// `odoo.create`: `{"model": "res.partner", "values": {...}}`.
pub(super) fn generic(obj: &Map<String, Value>) -> Result<Step, FieldError> {
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|s| model_name(s))
        .ok_or_else(|| {
            FieldError::new(
                "payload.model",
                "an Odoo model name, such as \"res.partner\", is required",
            )
        })?;
    let values = obj
        .get("values")
        .and_then(Value::as_object)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            FieldError::new("payload.values", "an object of field values is required")
        })?;
    let mut columns = Vec::new();
    for (k, v) in values {
        if k == "id" || k == ".id" {
            return Err(FieldError::new(
                format!("payload.values.{k}"),
                "plantd gives the record its external id; leave id out",
            ));
        }
        // `partner/name` would have Odoo's import create or change a record of another model
        // (a partner's `user_ids/login` makes a user): only a field, or a reference by
        // external id (`field/id`) or database id (`field/.id`).
        let (field, via) = k.split_once('/').unwrap_or((k.as_str(), "id"));
        if !method_name(field) || !matches!(via, "id" | ".id") {
            return Err(FieldError::new(
                format!("payload.values.{k}"),
                "name a field of the record, or refer to a record by external id (\"partner_id/id\") or database id (\"partner_id/.id\")",
            ));
        }
        columns.push((
            k.clone(),
            Cell::Text(
                cell(v)
                    .map_err(|m| FieldError::new(format!("payload.values.{k}"), m.to_string()))?,
            ),
        ));
    }
    Ok(Step::Create {
        model: model.to_string(),
        columns,
        context: Map::new(),
    })
}

/// A custom create's columns from the payload.
pub(super) fn create_columns(
    obj: &Map<String, Value>,
    columns: &[(String, Source)],
) -> Result<Vec<(String, Cell)>, FieldError> {
    let mut out = Vec::new();
    for (column, source) in columns {
        if let Some(v) = take(obj, source)? {
            out.push((
                column.clone(),
                Cell::Text(cell(v).map_err(|m| {
                    FieldError::new(format!("payload.{}", source.field), m.to_string())
                })?),
            ));
        }
    }
    Ok(out)
}

/// The record a custom write or action is for: by database id, else external id, else name.
pub(super) fn record_of(
    model: &str,
    obj: &Map<String, Value>,
    source: &RecordSource,
) -> Result<Ref, FieldError> {
    if let Some(s) = &source.id {
        if let Some(v) = take(obj, s)? {
            return positive_id(v).map(Ref::Id).ok_or_else(|| {
                FieldError::new(
                    format!("payload.{}", s.field),
                    "must be a record id (a positive integer)",
                )
            });
        }
    }
    if let Some(s) = &source.xmlid {
        if let Some(v) = take(obj, s)? {
            return xmlid(v)
                .map(Ref::Xmlid)
                .map_err(|m| FieldError::new(format!("payload.{}", s.field), m.to_string()));
        }
    }
    if let Some(s) = &source.name {
        if let Some(v) = take(obj, s)? {
            return text(v).map(Ref::Name).ok_or_else(|| {
                FieldError::new(
                    format!("payload.{}", s.field),
                    "must be the record's name (text)",
                )
            });
        }
    }
    let said: Vec<String> = [&source.id, &source.xmlid, &source.name]
        .into_iter()
        .flatten()
        .map(|s| s.field.clone())
        .collect();
    Err(FieldError::new(
        "payload",
        format!("name the {model} record: give {}", said.join(" or ")),
    ))
}

/// A positive integer (a database id).
pub(super) fn positive_id(v: &Value) -> Option<i64> {
    v.as_i64().filter(|i| *i > 0)
}

/// Non-blank text of at most 256 characters.
pub(super) fn text(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.trim().is_empty() && s.chars().count() <= 256)
        .map(str::to_string)
}

/// An external id: `module.name`, with no spaces.
pub(super) fn xmlid(v: &Value) -> Result<String, ValueError> {
    let s = v.as_str().unwrap_or_default();
    let ok = s.len() <= 256
        && s.split_once('.').is_some_and(|(m, n)| {
            !m.is_empty()
                && !n.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(ValueError::NotXmlid)
    }
}

/// Odoo field values for `write`, from the payload: numbers, text or true/false.
pub(super) fn field_values(
    obj: &Map<String, Value>,
    fields: &[(String, Source)],
) -> Result<Map<String, Value>, FieldError> {
    let mut values = Map::new();
    for (field, source) in fields {
        if let Some(v) = take(obj, source)? {
            if !(v.is_number() || v.is_string() || v.is_boolean()) {
                return Err(FieldError::new(
                    format!("payload.{}", source.field),
                    "must be a number, text or true/false",
                ));
            }
            values.insert(field.clone(), v.clone());
        }
    }
    Ok(values)
}

/// The payload's value for `source`; an error when it is required and missing or null.
pub(super) fn take<'a>(
    obj: &'a Map<String, Value>,
    source: &Source,
) -> Result<Option<&'a Value>, FieldError> {
    match obj.get(&source.field).filter(|v| !v.is_null()) {
        Some(v) => Ok(Some(v)),
        None if source.required => Err(FieldError::new(
            format!("payload.{}", source.field),
            "is required",
        )),
        None => Ok(None),
    }
}

/// A `load` cell: Odoo's import takes text, and converts it by the field's type.
pub(super) fn cell(v: &Value) -> Result<String, ValueError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
        _ => Err(ValueError::NotCell),
    }
}
