//! What each transaction `kind` does in Odoo: the mappings plantd ships, and those a plant adds
//! in `[apply.kinds.NAME]`. Pure: a kind and a payload become a [`Step`], or a refusal that says
//! which field is wrong (the ingest API answers 422 with it, so an unknown kind or a payload
//! that cannot be applied is refused when it arrives, not discovered later).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// One transaction's effect in Odoo.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create one record through `load`, under the external id `plantd.<plant>_<seq>`, in one
    /// call: a retry finds the record by that id and does not create it again.
    Create {
        model: String,
        /// `load` columns (`field`, `field/.id` for a database id, `field/id` for an external
        /// id) and their cells.
        columns: Vec<(String, String)>,
    },
    /// Write `values` on one existing record. Idempotent as it is: the apply runs in seq
    /// order, so a write done again after a crash sets what it set before, and nothing later
    /// has been written yet.
    Write {
        model: String,
        record: Record,
        values: Map<String, Value>,
    },
    /// Run `method` on one existing record, unless its `state` shows it has run (`done_state`);
    /// `write` first, when there is something to write.
    Action {
        model: String,
        record: Record,
        write: Map<String, Value>,
        method: String,
        done_state: String,
    },
}

/// How an action finds its record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Id(i64),
    /// By its `name` (such as a picking's "WH/IN/00012").
    Name(String),
}

/// A mapping from `[apply.kinds.NAME]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    pub model: String,
    /// "create", "write" (fields of a record), or "action" (run `method` on a record).
    pub operation: String,
    /// create: `load` column = payload field ("qty", or "qty?" when it may be missing);
    /// write: Odoo field = payload field.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// action: the method, such as "button_validate".
    pub method: Option<String>,
    /// write, action: the payload field holding the record's database id...
    pub record_id: Option<String>,
    /// ...or its name.
    pub record_name: Option<String>,
    /// action: the state in which the action has run (default "done").
    pub done_state: Option<String>,
    /// action: fields to write first: Odoo field = payload field.
    #[serde(default)]
    pub write: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Create {
        columns: Vec<(String, Source)>,
    },
    Write {
        record: RecordSource,
        values: Vec<(String, Source)>,
    },
    Action {
        record: RecordSource,
        write: Vec<(String, Source)>,
        method: String,
        done_state: String,
    },
    /// `odoo.create`: payload `{"model", "values"}`.
    Generic,
}

/// Where a write or an action finds its record in the payload: the field with its database id,
/// or the one with its name (at least one of them).
#[derive(Debug, Clone, PartialEq)]
struct RecordSource {
    id: Option<Source>,
    name: Option<Source>,
}

impl RecordSource {
    /// `record_id` / `record_name` of a `[apply.kinds.NAME]`; `field` names a config key.
    fn of(k: &KindConfig, field: impl Fn(&str) -> String) -> Result<Self, (String, String)> {
        if k.record_id.is_none() && k.record_name.is_none() {
            return Err((field("record_id"), "missing; name the payload field that holds the record's id (record_id) or name (record_name)".into()));
        }
        Ok(RecordSource {
            id: k.record_id.as_deref().map(src),
            name: k.record_name.as_deref().map(src),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Source {
    field: String,
    required: bool,
}

impl Source {
    fn parse(text: &str) -> Source {
        match text.strip_suffix('?') {
            Some(f) => Source {
                field: f.to_string(),
                required: false,
            },
            None => Source {
                field: text.to_string(),
                required: true,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Mapping {
    model: String,
    op: Op,
}

/// The kinds a plant knows: the shipped ones and its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Kinds {
    map: BTreeMap<String, Mapping>,
}

/// An Odoo model name: dotted lowercase words, such as "stock.move" (it goes into a URL path).
fn model_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// A public method name, such as "button_validate".
fn method_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn src(s: &str) -> Source {
    Source::parse(s)
}

fn cols(pairs: &[(&str, &str)]) -> Vec<(String, Source)> {
    pairs.iter().map(|(c, s)| (c.to_string(), src(s))).collect()
}

impl Kinds {
    /// The shipped kinds (README, "Shop-floor transactions in Odoo"), and `custom` on top (a
    /// custom kind may replace a shipped one).
    pub fn new(custom: &BTreeMap<String, KindConfig>) -> Result<Kinds, (String, String)> {
        let mut map = BTreeMap::new();
        map.insert(
            "odoo.create".to_string(),
            Mapping {
                model: String::new(),
                op: Op::Generic,
            },
        );
        map.insert(
            "stock.move".to_string(),
            Mapping {
                model: "stock.move".into(),
                op: Op::Create {
                    columns: cols(&[
                        ("product_id/.id", "product_id"),
                        ("product_uom_qty", "quantity"),
                        ("quantity", "quantity"),
                        ("location_id/.id", "location_id"),
                        ("location_dest_id/.id", "location_dest_id"),
                        ("picking_id/.id", "picking_id?"),
                        ("reference", "reference?"),
                    ]),
                },
            },
        );
        map.insert(
            "stock.picking.validate".to_string(),
            Mapping {
                model: "stock.picking".into(),
                op: Op::Action {
                    record: RecordSource {
                        id: Some(src("picking_id?")),
                        name: Some(src("picking?")),
                    },
                    write: vec![],
                    method: "button_validate".into(),
                    done_state: "done".into(),
                },
            },
        );
        map.insert(
            "mrp.production.done".to_string(),
            Mapping {
                model: "mrp.production".into(),
                op: Op::Action {
                    record: RecordSource {
                        id: Some(src("production_id?")),
                        name: Some(src("production?")),
                    },
                    write: cols(&[("qty_producing", "quantity")]),
                    method: "button_mark_done".into(),
                    done_state: "done".into(),
                },
            },
        );
        map.insert(
            "quality.check".to_string(),
            Mapping {
                model: "quality.check".into(),
                op: Op::Create {
                    columns: cols(&[
                        ("product_id/.id", "product_id"),
                        ("point_id/.id", "point_id?"),
                        ("quality_state", "result"),
                        ("note", "note?"),
                    ]),
                },
            },
        );
        map.insert(
            "workorder.time".to_string(),
            Mapping {
                model: "mrp.workcenter.productivity".into(),
                op: Op::Create {
                    columns: cols(&[
                        ("workorder_id/.id", "workorder_id"),
                        ("duration", "minutes"),
                        ("date_start", "started_at?"),
                        ("date_end", "ended_at?"),
                    ]),
                },
            },
        );
        for (name, k) in custom {
            let field = |f: &str| format!("apply.kinds.{name}.{f}");
            if !model_name(&k.model) {
                return Err((
                    field("model"),
                    format!(
                        "{:?} is not an Odoo model name such as \"stock.move\"",
                        k.model
                    ),
                ));
            }
            let op = match k.operation.as_str() {
                "create" => {
                    if let Some(bad) = k.values.keys().find(|c| matches!(c.as_str(), "id" | ".id"))
                    {
                        return Err((field("values"), format!("{bad:?}: plantd gives the record its external id; map only its fields")));
                    }
                    if k.values.is_empty() {
                        return Err((field("values"), "empty; map at least one Odoo field to a payload field, such as { product_uom_qty = \"qty\" }".into()));
                    }
                    Op::Create {
                        columns: k.values.iter().map(|(c, s)| (c.clone(), src(s))).collect(),
                    }
                }
                "write" => {
                    if k.method.is_some() {
                        return Err((
                            field("method"),
                            "a write runs no method; use operation = \"action\" to run one".into(),
                        ));
                    }
                    if k.done_state.is_some() {
                        return Err((
                            field("done_state"),
                            "a write has no done state; that is an action's".into(),
                        ));
                    }
                    if !k.write.is_empty() {
                        return Err((
                            field("write"),
                            "a write takes its fields in values = { … }".into(),
                        ));
                    }
                    if k.values.is_empty() {
                        return Err((field("values"), "empty; map at least one Odoo field to a payload field, such as { lot_name = \"lot\" }".into()));
                    }
                    if let Some(bad) = k
                        .values
                        .keys()
                        .find(|c| matches!(c.as_str(), "id" | ".id") || c.contains('/'))
                    {
                        return Err((field("values"), format!("{bad:?}: name a field of the record, such as \"origin\" (a many2one takes the database id as it is)")));
                    }
                    Op::Write {
                        record: RecordSource::of(k, field)?,
                        values: k.values.iter().map(|(c, s)| (c.clone(), src(s))).collect(),
                    }
                }
                "action" => {
                    let Some(method) = k.method.clone() else {
                        return Err((
                            field("method"),
                            "missing; name the method to run, such as \"button_validate\"".into(),
                        ));
                    };
                    if !method_name(&method) {
                        return Err((field("method"), format!("{method:?} is not a public method name such as \"button_validate\" (Odoo does not let private ones, starting with '_', be called remotely)")));
                    }
                    Op::Action {
                        record: RecordSource::of(k, field)?,
                        write: k.write.iter().map(|(c, s)| (c.clone(), src(s))).collect(),
                        method,
                        done_state: k.done_state.clone().unwrap_or_else(|| "done".into()),
                    }
                }
                other => {
                    return Err((
                        field("operation"),
                        format!(
                        "{other:?} is not an operation; use \"create\", \"write\" or \"action\""
                    ),
                    ))
                }
            };
            map.insert(
                name.clone(),
                Mapping {
                    model: k.model.clone(),
                    op,
                },
            );
        }
        Ok(Kinds { map })
    }

    pub fn names(&self) -> Vec<&str> {
        self.map.keys().map(String::as_str).collect()
    }

    /// What `kind` with `payload` does, or why it cannot be applied: (payload field, message).
    pub fn step(&self, kind: &str, payload: &Value) -> Result<Step, (String, String)> {
        let Some(m) = self.map.get(kind) else {
            return Err((
                "kind".into(),
                format!(
                    "unknown kind {kind:?}; this plant applies {} (add others in [apply.kinds] of plant.toml)",
                    self.names().join(", ")
                ),
            ));
        };
        let obj = payload
            .as_object()
            .ok_or_else(|| ("payload".to_string(), "must be a JSON object".to_string()))?;
        match &m.op {
            Op::Generic => {
                let model = obj
                    .get("model")
                    .and_then(Value::as_str)
                    .filter(|s| model_name(s))
                    .ok_or_else(|| {
                        (
                            "payload.model".to_string(),
                            "an Odoo model name, such as \"res.partner\", is required".to_string(),
                        )
                    })?;
                let values = obj
                    .get("values")
                    .and_then(Value::as_object)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        (
                            "payload.values".to_string(),
                            "an object of field values is required".to_string(),
                        )
                    })?;
                let mut columns = Vec::new();
                for (k, v) in values {
                    if k == "id" || k == ".id" {
                        return Err((
                            format!("payload.values.{k}"),
                            "plantd gives the record its external id; leave id out".into(),
                        ));
                    }
                    columns.push((
                        k.clone(),
                        cell(v).map_err(|m| (format!("payload.values.{k}"), m))?,
                    ));
                }
                Ok(Step::Create {
                    model: model.to_string(),
                    columns,
                })
            }
            Op::Create { columns } => {
                let mut out = Vec::new();
                for (column, source) in columns {
                    if let Some(v) = take(obj, source)? {
                        out.push((
                            column.clone(),
                            cell(v).map_err(|m| (format!("payload.{}", source.field), m))?,
                        ));
                    }
                }
                Ok(Step::Create {
                    model: m.model.clone(),
                    columns: out,
                })
            }
            Op::Write { record, values } => Ok(Step::Write {
                model: m.model.clone(),
                record: record_of(&m.model, obj, record)?,
                values: field_values(obj, values)?,
            }),
            Op::Action {
                record,
                write,
                method,
                done_state,
            } => {
                let record = record_of(&m.model, obj, record)?;
                let values = field_values(obj, write)?;
                Ok(Step::Action {
                    model: m.model.clone(),
                    record,
                    write: values,
                    method: method.clone(),
                    done_state: done_state.clone(),
                })
            }
        }
    }
}

/// The record a write or an action is for: by database id, else by name.
fn record_of(
    model: &str,
    obj: &Map<String, Value>,
    source: &RecordSource,
) -> Result<Record, (String, String)> {
    let by_id = match &source.id {
        Some(s) => take(obj, s)?
            .map(|v| {
                v.as_i64().filter(|i| *i > 0).ok_or_else(|| {
                    (
                        format!("payload.{}", s.field),
                        "must be a record id (a positive integer)".to_string(),
                    )
                })
            })
            .transpose()?,
        None => None,
    };
    let by_name = match &source.name {
        Some(s) => take(obj, s)?
            .map(|v| {
                v.as_str()
                    .filter(|n| !n.trim().is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        (
                            format!("payload.{}", s.field),
                            "must be the record's name (text)".to_string(),
                        )
                    })
            })
            .transpose()?,
        None => None,
    };
    match (by_id, by_name) {
        (Some(id), _) => Ok(Record::Id(id)),
        (None, Some(name)) => Ok(Record::Name(name)),
        (None, None) => {
            let said: Vec<String> = [&source.id, &source.name]
                .into_iter()
                .flatten()
                .map(|s| s.field.clone())
                .collect();
            Err((
                "payload".into(),
                format!("name the {model} record: give {}", said.join(" or ")),
            ))
        }
    }
}

/// Odoo field values for `write`, from the payload: numbers, text or true/false.
fn field_values(
    obj: &Map<String, Value>,
    fields: &[(String, Source)],
) -> Result<Map<String, Value>, (String, String)> {
    let mut values = Map::new();
    for (field, source) in fields {
        if let Some(v) = take(obj, source)? {
            if !(v.is_number() || v.is_string() || v.is_boolean()) {
                return Err((
                    format!("payload.{}", source.field),
                    "must be a number, text or true/false".into(),
                ));
            }
            values.insert(field.clone(), v.clone());
        }
    }
    Ok(values)
}

/// The payload's value for `source`; an error when it is required and missing or null.
fn take<'a>(
    obj: &'a Map<String, Value>,
    source: &Source,
) -> Result<Option<&'a Value>, (String, String)> {
    match obj.get(&source.field).filter(|v| !v.is_null()) {
        Some(v) => Ok(Some(v)),
        None if source.required => Err((format!("payload.{}", source.field), "is required".into())),
        None => Ok(None),
    }
}

/// A `load` cell: Odoo's import takes text, and converts it by the field's type.
fn cell(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
        _ => Err(
            "must be text, a number or true/false (Odoo's import takes one value per field)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shipped_kinds_become_steps_and_bad_payloads_name_the_field() {
        let kinds = Kinds::new(&BTreeMap::new()).unwrap();
        let step = kinds
            .step(
                "stock.move",
                &json!({"product_id": 7, "quantity": 2.5, "location_id": 1, "location_dest_id": 2}),
            )
            .unwrap();
        assert_eq!(
            step,
            Step::Create {
                model: "stock.move".into(),
                columns: vec![
                    ("product_id/.id".into(), "7".into()),
                    ("product_uom_qty".into(), "2.5".into()),
                    ("quantity".into(), "2.5".into()),
                    ("location_id/.id".into(), "1".into()),
                    ("location_dest_id/.id".into(), "2".into()),
                ]
            }
        );
        let step = kinds
            .step("stock.picking.validate", &json!({"picking": "WH/IN/00012"}))
            .unwrap();
        assert!(
            matches!(step, Step::Action { ref record, ref method, .. } if *record == Record::Name("WH/IN/00012".into()) && method == "button_validate")
        );
        let step = kinds
            .step(
                "mrp.production.done",
                &json!({"production_id": 4, "quantity": 10}),
            )
            .unwrap();
        assert!(
            matches!(step, Step::Action { ref write, .. } if write["qty_producing"] == json!(10))
        );
        let step = kinds
            .step(
                "odoo.create",
                &json!({"model": "res.partner", "values": {"name": "Acme", "active": true}}),
            )
            .unwrap();
        assert_eq!(
            step,
            Step::Create {
                model: "res.partner".into(),
                columns: vec![
                    ("active".into(), "1".into()),
                    ("name".into(), "Acme".into())
                ]
            }
        );

        for (kind, payload, field, says) in [
            ("scan", json!({}), "kind", "unknown kind \"scan\""),
            (
                "stock.move",
                json!({"quantity": 1, "location_id": 1, "location_dest_id": 2}),
                "payload.product_id",
                "required",
            ),
            (
                "stock.move",
                json!({"product_id": {"id": 1}, "quantity": 1, "location_id": 1, "location_dest_id": 2}),
                "payload.product_id",
                "must be text",
            ),
            (
                "stock.picking.validate",
                json!({}),
                "payload",
                "picking_id or picking",
            ),
            (
                "stock.picking.validate",
                json!({"picking_id": -3}),
                "payload.picking_id",
                "positive integer",
            ),
            (
                "odoo.create",
                json!({"values": {"a": 1}}),
                "payload.model",
                "model name",
            ),
            (
                "odoo.create",
                json!({"model": "x", "values": {"id": "7"}}),
                "payload.values.id",
                "external id",
            ),
            (
                "odoo.create",
                json!({"model": "x", "values": {}}),
                "payload.values",
                "object of field values",
            ),
            (
                "odoo.create",
                json!({"model": "../../web/x?", "values": {"a": 1}}),
                "payload.model",
                "model name",
            ),
        ] {
            let (f, m) = kinds.step(kind, &payload).unwrap_err();
            assert_eq!(f, field, "{kind} {payload}: {m}");
            assert!(
                m.contains(says),
                "{kind} {payload}: {m:?} should say {says:?}"
            );
        }
    }

    #[test]
    fn custom_kinds_are_checked_when_the_config_is_read() {
        let parse = |toml_text: &str| {
            let k: BTreeMap<String, KindConfig> = toml::from_str(toml_text).unwrap();
            Kinds::new(&k)
        };
        let kinds = parse("[\"pallet.in\"]\nmodel = \"stock.move\"\noperation = \"create\"\nvalues = { product_uom_qty = \"qty\", origin = \"lot?\" }\n").unwrap();
        assert_eq!(
            kinds.step("pallet.in", &json!({"qty": 3})).unwrap(),
            Step::Create {
                model: "stock.move".into(),
                columns: vec![("product_uom_qty".into(), "3".into())]
            }
        );
        let kinds = parse("[\"lot.rename\"]\nmodel = \"stock.lot\"\noperation = \"write\"\nrecord_name = \"lot\"\nvalues = { ref = \"code\", note = \"note?\" }\n").unwrap();
        assert_eq!(
            kinds
                .step("lot.rename", &json!({"lot": "L-7", "code": "X7"}))
                .unwrap(),
            Step::Write {
                model: "stock.lot".into(),
                record: Record::Name("L-7".into()),
                values: Map::from_iter([("ref".to_string(), json!("X7"))]),
            }
        );
        assert_eq!(
            kinds
                .step("lot.rename", &json!({"code": "X7"}))
                .unwrap_err(),
            ("payload.lot".to_string(), "is required".to_string())
        );
        assert_eq!(
            kinds
                .step("lot.rename", &json!({"lot": "L-7", "code": [1]}))
                .unwrap_err()
                .0,
            "payload.code"
        );
        for (text, field) in [
            ("[k]\nmodel = \"m\"\noperation = \"delete\"\n", "apply.kinds.k.operation"),
            ("[k]\nmodel = \"m\"\noperation = \"write\"\nrecord_id = \"id\"\n", "apply.kinds.k.values"),
            ("[k]\nmodel = \"m\"\noperation = \"write\"\nvalues = { x = \"x\" }\n", "apply.kinds.k.record_id"),
            ("[k]\nmodel = \"m\"\noperation = \"write\"\nrecord_id = \"id\"\nmethod = \"go\"\nvalues = { x = \"x\" }\n", "apply.kinds.k.method"),
            ("[k]\nmodel = \"m\"\noperation = \"write\"\nrecord_id = \"id\"\nvalues = { \"x/id\" = \"x\" }\n", "apply.kinds.k.values"),
            ("[k]\nmodel = \"m\"\noperation = \"write\"\nrecord_id = \"id\"\ndone_state = \"done\"\nvalues = { x = \"x\" }\n", "apply.kinds.k.done_state"),
            ("[k]\nmodel = \"m\"\noperation = \"write\"\nrecord_id = \"id\"\nwrite = { x = \"x\" }\nvalues = { x = \"x\" }\n", "apply.kinds.k.write"),
            ("[k]\nmodel = \"m\"\noperation = \"create\"\n", "apply.kinds.k.values"),
            ("[k]\nmodel = \"m\"\noperation = \"action\"\nrecord_id = \"id\"\n", "apply.kinds.k.method"),
            ("[k]\nmodel = \"m\"\noperation = \"action\"\nmethod = \"_private\"\nrecord_id = \"id\"\n", "apply.kinds.k.method"),
            ("[k]\nmodel = \"m\"\noperation = \"action\"\nmethod = \"go\"\n", "apply.kinds.k.record_id"),
            ("[k]\nmodel = \"m\"\noperation = \"create\"\nvalues = { \".id\" = \"x\" }\n", "apply.kinds.k.values"),
            ("[k]\nmodel = \"a/b\"\noperation = \"create\"\nvalues = { x = \"x\" }\n", "apply.kinds.k.model"),
        ] {
            assert_eq!(parse(text).unwrap_err().0, field, "{text}");
        }
    }
}
