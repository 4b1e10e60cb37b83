//! The kinds plantd ships, each with its own payload (docs/odoo.md, "Shop-floor transactions
//! in Odoo"). Pure: a payload becomes a [`Step`], or a refusal naming the field.
//!
//! Records are named as the device knows them: `product` (internal reference or barcode),
//! `location` / `location_dest` (full name such as "WH/Stock", or barcode), `picking` and
//! `production` (their names), or `<base>_xmlid` (an external id) or `<base>_id` (a database
//! id, one Odoo's own: the plant's and the central Odoo's differ). Times are ISO 8601 with a UTC
//! offset, or Odoo's own `YYYY-MM-DD HH:MM:SS` (UTC), and reach Odoo in UTC.

use serde_json::{json, Map, Value};

use super::mapping::{Cell, Ref, Step};
use super::payload::{cell, positive_id, text, xmlid};
use super::ValueError;
use crate::field::FieldError;

/// A shipped kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    StockMove,
    PickingValidate,
    ProductionDone,
    WorkorderTime,
    QualityCheck,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::StockMove,
        Kind::PickingValidate,
        Kind::ProductionDone,
        Kind::WorkorderTime,
        Kind::QualityCheck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::StockMove => "stock.move",
            Kind::PickingValidate => "stock.picking.validate",
            Kind::ProductionDone => "mrp.production.done",
            Kind::WorkorderTime => "workorder.time",
            Kind::QualityCheck => "quality.check",
        }
    }

    /// The models it needs in Odoo; the first is the one its records are made in.
    pub fn models(self) -> &'static [&'static str] {
        match self {
            Kind::StockMove => &["stock.move", "stock.picking"],
            Kind::PickingValidate => &["stock.picking"],
            Kind::ProductionDone => &["mrp.production"],
            Kind::WorkorderTime => &["mrp.workcenter.productivity", "mrp.workorder"],
            Kind::QualityCheck => &["quality.check"],
        }
    }

    pub fn step(self, obj: &Map<String, Value>) -> Result<Step, FieldError> {
        match self {
            Kind::StockMove => {
                let quantity = quantity(obj, "quantity")?
                    .ok_or_else(|| FieldError::new("payload.quantity", "is required"))?;
                let reference = optional_text(obj, "reference")?;
                Ok(Step::Move {
                    columns: vec![
                        id_cell(
                            "product_id",
                            "product.product",
                            need(obj, "product", "product.product")?,
                        ),
                        ("product_uom_qty".into(), Cell::Text(number(quantity))),
                        id_cell(
                            "location_id",
                            "stock.location",
                            need(obj, "location", "stock.location")?,
                        ),
                        id_cell(
                            "location_dest_id",
                            "stock.location",
                            need(obj, "location_dest", "stock.location")?,
                        ),
                    ],
                    reference,
                })
            }
            Kind::PickingValidate => {
                let picking = need(obj, "picking", "stock.picking")?;
                let mut lines = Vec::new();
                if let Some(list) = obj.get("lines").filter(|v| !v.is_null()) {
                    let list = list.as_array().filter(|l| !l.is_empty()).ok_or_else(|| {
                        FieldError::new("payload.lines", "must be a non-empty list of {\"product\", \"quantity\"}; leave it out to validate every move in full")
                    })?;
                    if list.len() > 1000 {
                        return Err(FieldError::new("payload.lines", "more than 1000 lines"));
                    }
                    for (i, line) in list.iter().enumerate() {
                        let at = |f: &str| format!("payload.lines[{i}].{f}");
                        let line = line.as_object().ok_or_else(|| {
                            FieldError::new(
                                format!("payload.lines[{i}]"),
                                "must be an object {\"product\", \"quantity\"}",
                            )
                        })?;
                        let product = reference(line, "product", "product.product", true)
                            .map_err(|e| {
                                FieldError::new(
                                    e.field
                                        .replacen("payload", &format!("payload.lines[{i}]"), 1),
                                    e.message,
                                )
                            })?
                            .expect("required");
                        let q = quantity_or_zero(line, "quantity")
                            .map_err(|e| FieldError::new(at("quantity"), e.message))?
                            .ok_or_else(|| FieldError::new(at("quantity"), "is required"))?;
                        lines.push((product, q));
                    }
                }
                Ok(Step::Validate {
                    picking,
                    lines,
                    backorder: flag(obj, "backorder")?.unwrap_or(true),
                })
            }
            Kind::ProductionDone => Ok(Step::Produce {
                production: need(obj, "production", "mrp.production")?,
                quantity: quantity(obj, "quantity")?,
                backorder: flag(obj, "backorder")?.unwrap_or(true),
            }),
            Kind::WorkorderTime => workorder_time(obj),
            Kind::QualityCheck => {
                let mut columns = vec![id_cell(
                    "product_id",
                    "product.product",
                    need(obj, "product", "product.product")?,
                )];
                if let Some(point) = reference(obj, "point", "quality.point", false)? {
                    columns.push(id_cell("point_id", "quality.point", point));
                }
                let result = optional_text(obj, "result")?.ok_or_else(|| {
                    FieldError::new("payload.result", "is required (pass or fail)")
                })?;
                columns.push(("quality_state".into(), Cell::Text(result)));
                if let Some(note) = optional_text(obj, "note")? {
                    columns.push(("note".into(), Cell::Text(note)));
                }
                Ok(Step::Create {
                    model: "quality.check".into(),
                    columns,
                    context: Map::new(),
                })
            }
        }
    }
}

/// `workorder.time`: a time log on the workorder's work center, productive unless `loss`
/// names another loss reason. Odoo derives the duration from the two times, so the payload
/// gives both, or one of them with `minutes`.
fn workorder_time(obj: &Map<String, Value>) -> Result<Step, FieldError> {
    let workorder = reference(obj, "workorder", "mrp.workorder", false)?.ok_or_else(|| {
        FieldError::new(
            "payload",
            "name the workorder: give workorder_id or workorder_xmlid",
        )
    })?;
    if matches!(workorder, Ref::Code(_)) {
        return Err(FieldError::new(
            "payload.workorder",
            "a workorder has no code; give workorder_id or workorder_xmlid",
        ));
    }
    let minutes = quantity(obj, "minutes")?;
    let start = time(obj, "started_at")?;
    let end = time(obj, "ended_at")?;
    let (start, end) = match (start, end, minutes) {
        (Some(s), Some(e), None) => (s, e),
        (Some(s), None, Some(m)) => (s, shifted(s, span(m)?)?),
        (None, Some(e), Some(m)) => (shifted(e, -span(m)?)?, e),
        (Some(_), Some(_), Some(_)) => {
            return Err(FieldError::new("payload.minutes", "give started_at and ended_at, or one of them with minutes, not all three (Odoo derives the duration from the times)"))
        }
        _ => {
            return Err(FieldError::new("payload", "give started_at and ended_at, or one of them with minutes (ISO 8601 with a UTC offset, such as 2026-12-06T08:00:00+01:00)"))
        }
    };
    if end < start {
        return Err(FieldError::new("payload.ended_at", "is before started_at"));
    }
    let loss = match reference(obj, "loss", "mrp.workcenter.productivity.loss", false)? {
        Some(r) => Cell::Id {
            model: "mrp.workcenter.productivity.loss".into(),
            by: r,
        },
        None => Cell::First {
            model: "mrp.workcenter.productivity.loss".into(),
            domain: json!([["loss_type", "=", "productive"]]),
            order: "sequence, id".into(),
        },
    };
    Ok(Step::Create {
        model: "mrp.workcenter.productivity".into(),
        columns: vec![
            id_cell("workorder_id", "mrp.workorder", workorder.clone()),
            (
                "workcenter_id/.id".into(),
                Cell::FieldOf {
                    model: "mrp.workorder".into(),
                    record: workorder,
                    field: "workcenter_id".into(),
                },
            ),
            ("loss_id/.id".into(), loss),
            ("date_start".into(), Cell::Text(odoo_time(start))),
            ("date_end".into(), Cell::Text(odoo_time(end))),
        ],
        // Odoo's import reads a datetime in the context's time zone, else the API user's: the
        // times are UTC whatever time zone that user has.
        context: Map::from_iter([("tz".to_string(), json!("UTC"))]),
    })
}

fn id_cell(field: &str, model: &str, by: Ref) -> (String, Cell) {
    (
        format!("{field}/.id"),
        Cell::Id {
            model: model.into(),
            by,
        },
    )
}

/// A required record reference.
fn need(obj: &Map<String, Value>, base: &str, model: &str) -> Result<Ref, FieldError> {
    reference(obj, base, model, true).map(|r| r.expect("required"))
}

/// The record `base` names: `<base>_id`, `<base>_xmlid` or `<base>` (its code); one of them.
pub fn reference(
    obj: &Map<String, Value>,
    base: &str,
    model: &str,
    required: bool,
) -> Result<Option<Ref>, FieldError> {
    let (id_key, xmlid_key) = (format!("{base}_id"), format!("{base}_xmlid"));
    let given: Vec<&str> = [id_key.as_str(), xmlid_key.as_str(), base]
        .into_iter()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match given.as_slice() {
        [] if required => Err(FieldError::new(
            "payload",
            format!(
                "name the {model}: give {base} (its {}), {xmlid_key} or {id_key}",
                super::mapping::code_fields(model).join(" or ")
            ),
        )),
        [] => Ok(None),
        [key] => {
            let v = &obj[*key];
            let at = format!("payload.{key}");
            if *key == id_key {
                positive_id(v)
                    .map(|i| Some(Ref::Id(i)))
                    .ok_or(FieldError::new(
                        at,
                        "must be a record id (a positive integer)",
                    ))
            } else if *key == xmlid_key {
                xmlid(v)
                    .map(|x| Some(Ref::Xmlid(x)))
                    .map_err(|m| FieldError::new(at, m.to_string()))
            } else {
                text(v).map(|c| Some(Ref::Code(c))).ok_or(FieldError::new(
                    at,
                    format!(
                        "must be the {model}'s {} (text)",
                        super::mapping::code_fields(model).join(" or ")
                    ),
                ))
            }
        }
        many => Err(FieldError::new(
            format!("payload.{}", many[1]),
            format!("name the {model} once: {} are all given", many.join(", ")),
        )),
    }
}

/// A positive number, when given.
fn quantity(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, FieldError> {
    match quantity_or_zero(obj, key)? {
        Some(q) if q <= 0.0 => Err(FieldError::new(
            format!("payload.{key}"),
            "must be more than 0",
        )),
        q => Ok(q),
    }
}

/// A number of 0 or more, when given.
fn quantity_or_zero(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, FieldError> {
    match obj.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|q| q.is_finite() && *q >= 0.0 && *q < 1e12)
            .map(Some)
            .ok_or(FieldError::new(
                format!("payload.{key}"),
                "must be a number of 0 or more",
            )),
    }
}

fn flag(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, FieldError> {
    match obj.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or(FieldError::new(
            format!("payload.{key}"),
            "must be true or false",
        )),
    }
}

fn optional_text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, FieldError> {
    match obj.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => cell(v)
            .ok()
            .filter(|s| !s.trim().is_empty() && s.chars().count() <= 256)
            .map(Some)
            .ok_or(FieldError::new(
                format!("payload.{key}"),
                "must be text of 1 to 256 characters",
            )),
    }
}

fn number(q: f64) -> String {
    serde_json::Number::from_f64(q)
        .map(|n| n.to_string())
        .unwrap_or_else(|| q.to_string())
}

fn span(minutes: f64) -> Result<jiff::SignedDuration, FieldError> {
    if minutes > 60.0 * 24.0 * 366.0 {
        return Err(FieldError::new("payload.minutes", "is more than a year"));
    }
    Ok(jiff::SignedDuration::from_secs_f64(minutes * 60.0))
}

/// `t` moved by `by`, or a refusal when that leaves the times Odoo takes.
fn shifted(t: jiff::Timestamp, by: jiff::SignedDuration) -> Result<jiff::Timestamp, FieldError> {
    t.checked_add(by)
        .ok()
        .filter(|t| (0..253_370_764_800).contains(&t.as_second()))
        .ok_or(FieldError::new(
            "payload.minutes",
            "takes the time out of the years 1970 to 9998 (Odoo's range)",
        ))
}

/// A time from the payload: ISO 8601 with a UTC offset ("2026-12-06T08:00:00+01:00", "…Z"),
/// or Odoo's own "2026-12-06 07:00:00", which Odoo means as UTC.
fn time(obj: &Map<String, Value>, key: &str) -> Result<Option<jiff::Timestamp>, FieldError> {
    let Some(v) = obj.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let s = v.as_str().unwrap_or_default();
    parse_time(s)
        .map(Some)
        .map_err(|m| FieldError::new(format!("payload.{key}"), m.to_string()))
}

pub fn parse_time(s: &str) -> Result<jiff::Timestamp, ValueError> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    // Odoo's format, UTC by Odoo's definition.
    if s.len() == 19 && s.as_bytes()[10] == b' ' {
        if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
            if let Ok(t) = jiff::tz::TimeZone::UTC.to_timestamp(dt) {
                return Ok(t);
            }
        }
    }
    if s.parse::<jiff::civil::DateTime>().is_ok() {
        return Err(ValueError::NoOffset(s.to_string()));
    }
    Err(ValueError::NotTime(s.to_string()))
}

/// Odoo's datetime format, in UTC.
pub fn odoo_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}
