//! What each transaction `kind` does in Odoo: the mappings plantd ships (`shipped.rs`), and
//! those a plant adds in `[apply.kinds.NAME]`. Pure: a kind and a payload become a [`Step`], or a
//! refusal that says which field is wrong (the ingest API answers 422 with it, so an unknown
//! kind or a payload that cannot be applied is refused when it arrives, not discovered later).
//!
//! Records are named by external id, code or barcode ([`Ref`]), resolved in each Odoo on its
//! own, so that one transaction means the same record at the plant and in the centre; a
//! database id still works, for a plant that applies only to its own Odoo.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::payload::{create_columns, field_values, generic, record_of};
use super::shipped;
use crate::field::FieldError;

/// Why `odoo.create` may not create a record of a model, or link the records of one, here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error("{model} is a security model (users, groups, access rules, server actions, crons and the like); odoo.create touches it only when [apply.kinds.\"odoo.create\"] models in plant.toml names it exactly")]
    SecurityModel { model: String },
    /// The plant's `odoo.create` names no models.
    #[error("odoo.create may create no model on this plant; name the models it may create, such as {model:?}, in [apply.kinds.\"odoo.create\"] models of plant.toml")]
    NoModels { model: String },
    /// The plant has no `[apply]` section at all.
    #[error("odoo.create may create no model on this plant: it has no [apply] section; add [apply.kinds.\"odoo.create\"] models = [{model:?}] to plant.toml to allow it")]
    NoApply { model: String },
    /// `model` is not among `allowed` (the models named, joined by ", ").
    #[error("odoo.create may create only {allowed} on this plant, not {model}; add it to [apply.kinds.\"odoo.create\"] models in plant.toml")]
    NotListed { model: String, allowed: String },
    /// A one2many or many2many to a security model not named exactly.
    #[error("{model}.{field} is a {kind} to {relation}, a security model: linking its records changes who may do what; odoo.create writes it only when [apply.kinds.\"odoo.create\"] models names {relation} exactly")]
    SecurityLink {
        model: String,
        field: String,
        kind: String,
        relation: String,
    },
}

/// One transaction's effect in Odoo.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create one record through `load`, under the external id `plantd.<plant>_<seq>`, in one
    /// call: a retry finds the record by that id and does not create it again.
    Create {
        model: String,
        /// `load` columns (`field`, `field/.id` for a database id) and their cells.
        columns: Vec<(String, Cell)>,
        context: Map<String, Value>,
    },
    /// `stock.move`: a move created under the external id (as a create), put in a transfer of
    /// its own and validated, so that the quantity moves; done once, guarded by the move's state.
    Move {
        /// `load` columns of the move (the description `name` is added at apply: the
        /// reference, else the external id).
        columns: Vec<(String, Cell)>,
        /// The transfer's source document and the move's description.
        reference: Option<String>,
    },
    /// Write `values` on one existing record. Idempotent as it is: the apply runs in seq
    /// order, so a write done again after a crash sets what it set before, and nothing later
    /// has been written yet.
    Write {
        model: String,
        record: Ref,
        values: Map<String, Value>,
        context: Map<String, Value>,
    },
    /// Run `method` on one existing record, unless its `state` shows it has run (`done_state`);
    /// `write` first, when there is something to write. A wizard in the answer is a refusal.
    Action {
        model: String,
        record: Ref,
        write: Map<String, Value>,
        method: String,
        done_state: String,
        context: Map<String, Value>,
    },
    /// `stock.picking.validate`: the picked quantities set (the payload's lines, else each
    /// move's demand), then validated with no wizard: the rest goes to a backorder or not.
    Validate {
        picking: Ref,
        /// (product, quantity); empty: every move in full.
        lines: Vec<(Ref, f64)>,
        backorder: bool,
    },
    /// `mrp.production.done`: the quantity produced (default: the order's), components
    /// consumed as the bill of materials says (`set_qty_producing`), then marked done with no
    /// wizard: the rest goes to a backorder or not.
    Produce {
        production: Ref,
        quantity: Option<f64>,
        backorder: bool,
    },
}

/// A record a payload names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ref {
    /// A database id: one Odoo's own number (the plant's and the central Odoo differ).
    Id(i64),
    /// An external id, `module.name`: the same in every Odoo that loaded the same data.
    Xmlid(String),
    /// The model's code ([`code_fields`]): a product's internal reference or barcode, a
    /// location's full name ("WH/Stock") or barcode, else the record's name.
    Code(String),
    /// The record's `name`, exactly (a custom kind's `record_name`).
    Name(String),
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ref::Id(id) => write!(f, "id {id}"),
            Ref::Xmlid(x) => write!(f, "external id {x}"),
            Ref::Code(c) => write!(f, "{c:?}"),
            Ref::Name(n) => write!(f, "named {n:?}"),
        }
    }
}

/// The fields a code is looked up in, in order: the first that finds one record wins.
pub fn code_fields(model: &str) -> &'static [&'static str] {
    match model {
        "product.product" | "product.template" => &["default_code", "barcode"],
        "stock.location" => &["complete_name", "barcode"],
        _ => &["name"],
    }
}

/// A `load` cell, resolved in the Odoo it goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Odoo's import takes text and converts it by the field's type.
    Text(String),
    /// A record's database id in this Odoo.
    Id { model: String, by: Ref },
    /// A many2one of a record, such as a workorder's work center.
    FieldOf {
        model: String,
        record: Ref,
        field: String,
    },
    /// The first record of `model` matching `domain` in `order`, such as the productive loss.
    First {
        model: String,
        domain: Value,
        order: String,
    },
}

/// A mapping from `[apply.kinds.NAME]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    /// The one model a custom kind touches (its exact name, so it may be a security model).
    #[serde(default)]
    pub model: String,
    /// Only in `[apply.kinds."odoo.create"]`: the models a device granted `odoo.create` may
    /// create records of: names, or patterns ending in `*` ("stock.*", "*"); a security model
    /// ([`security_model`]) only by its exact name.
    #[serde(default)]
    pub models: Vec<String>,
    /// "create", "write" (fields of a record), or "action" (run `method` on a record).
    #[serde(default)]
    pub operation: String,
    /// create: `load` column = payload field ("qty", or "qty?" when it may be missing);
    /// write: Odoo field = payload field.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// action: the method, such as "button_validate".
    pub method: Option<String>,
    /// write, action: the payload field holding the record's database id...
    pub record_id: Option<String>,
    /// ...or its name...
    pub record_name: Option<String>,
    /// ...or its external id (`module.name`).
    pub record_xmlid: Option<String>,
    /// action: the state in which the action has run (default "done").
    pub done_state: Option<String>,
    /// action: fields to write first: Odoo field = payload field.
    #[serde(default)]
    pub write: BTreeMap<String, String>,
    /// The context of every call the kind makes, such as `{ skip_backorder = true }`.
    #[serde(default)]
    pub context: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Op {
    Create {
        columns: Vec<(String, Source)>,
        context: Map<String, Value>,
    },
    Write {
        record: RecordSource,
        values: Vec<(String, Source)>,
        context: Map<String, Value>,
    },
    Action {
        record: RecordSource,
        write: Vec<(String, Source)>,
        method: String,
        done_state: String,
        context: Map<String, Value>,
    },
    /// `odoo.create`: payload `{"model", "values"}`.
    Generic,
    /// A shipped kind with its own payload.
    Shipped(shipped::Kind),
}

/// Where a write or an action finds its record in the payload (at least one of them).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RecordSource {
    pub id: Option<Source>,
    pub name: Option<Source>,
    pub xmlid: Option<Source>,
}

impl RecordSource {
    /// `record_id` / `record_name` / `record_xmlid` of a `[apply.kinds.NAME]`.
    fn of(k: &KindConfig, field: impl Fn(&str) -> String) -> Result<Self, FieldError> {
        if k.record_id.is_none() && k.record_name.is_none() && k.record_xmlid.is_none() {
            return Err(FieldError::new(field("record_id"), "missing; name the payload field that holds the record's id (record_id), name (record_name) or external id (record_xmlid)"));
        }
        Ok(RecordSource {
            id: k.record_id.as_deref().map(Source::parse),
            name: k.record_name.as_deref().map(Source::parse),
            xmlid: k.record_xmlid.as_deref().map(Source::parse),
        })
    }
}

/// A payload field, and whether it must be there.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Source {
    pub field: String,
    pub required: bool,
}

impl Source {
    /// "qty" (required) or "qty?" (may be missing).
    pub fn parse(text: &str) -> Source {
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
    /// The models it needs in Odoo (none for `odoo.create`: its payload names one).
    models: Vec<String>,
    op: Op,
}

/// The kinds a plant knows: the shipped ones and its own; and those whose models the Odoo
/// applied to lacks ([`Kinds::mark_missing`]), refused from then on.
#[derive(Debug, Clone)]
pub struct Kinds {
    map: BTreeMap<String, Mapping>,
    missing: Arc<RwLock<BTreeMap<String, String>>>,
    /// `[apply.kinds."odoo.create"] models`: what `odoo.create` may create (none by default).
    create_models: Vec<String>,
}

impl PartialEq for Kinds {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map && self.create_models == other.create_models
    }
}

/// Models that grant rights, run code or change how Odoo works: users and their keys, groups,
/// access rules, server actions, crons, modules, mail servers, settings. `odoo.create` touches
/// one only when `[apply.kinds."odoo.create"] models` names it exactly; a pattern never
/// matches one. Each entry covers the model and its dotted sub-models (`res.users` covers
/// `res.users.apikeys`); `ir` covers every `ir.*`.
pub const SECURITY_MODELS: &[&str] = &[
    "ir",
    "base",
    "base_import",
    "res.users",
    "res.groups",
    "res.company",
    "res.config",
    "res.device",
    "change.password",
    "auth_totp",
    "auth.totp",
    "fetchmail",
    "mail.mail",
    "bus",
];

/// Whether `model` is one of the [`SECURITY_MODELS`].
pub fn security_model(model: &str) -> bool {
    SECURITY_MODELS.iter().any(|p| {
        model == *p
            || model
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// A `models` entry: a model name, or a prefix of one ending in `*` ("stock.*", "*").
fn model_pattern(s: &str) -> bool {
    match s.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => {
            let word = prefix.strip_suffix('.').unwrap_or(prefix);
            model_name(word)
        }
        None => model_name(s),
    }
}

/// An Odoo model name: dotted lowercase words, such as "stock.move" (it goes into a URL path).
pub fn model_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// A public method name, such as "button_validate".
pub(super) fn method_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Kinds {
    /// The shipped kinds (docs/odoo.md), and `custom` on top (a
    /// custom kind may replace a shipped one).
    pub fn new(custom: &BTreeMap<String, KindConfig>) -> Result<Kinds, FieldError> {
        let mut map = BTreeMap::new();
        map.insert(
            "odoo.create".to_string(),
            Mapping {
                models: vec![],
                op: Op::Generic,
            },
        );
        for kind in shipped::Kind::ALL {
            map.insert(
                kind.name().to_string(),
                Mapping {
                    models: kind.models().iter().map(|m| m.to_string()).collect(),
                    op: Op::Shipped(kind),
                },
            );
        }
        let mut create_models = Vec::new();
        for (name, k) in custom {
            let field = |f: &str| format!("apply.kinds.{name}.{f}");
            if name == "odoo.create" {
                create_models = generic_models(k, field)?;
                continue;
            }
            if !k.models.is_empty() {
                return Err(FieldError::new(field("models"), "only [apply.kinds.\"odoo.create\"] takes a list of models; a custom kind names its one model in model = \"...\""));
            }
            if !model_name(&k.model) {
                return Err(FieldError::new(
                    field("model"),
                    format!(
                        "{:?} is not an Odoo model name such as \"stock.move\"",
                        k.model
                    ),
                ));
            }
            let context = k.context.clone();
            let op = match k.operation.as_str() {
                "create" => {
                    if let Some(bad) = k.values.keys().find(|c| matches!(c.as_str(), "id" | ".id"))
                    {
                        return Err(FieldError::new(field("values"), format!("{bad:?}: plantd gives the record its external id; map only its fields")));
                    }
                    if k.values.is_empty() {
                        return Err(FieldError::new(field("values"), "empty; map at least one Odoo field to a payload field, such as { product_uom_qty = \"qty\" }"));
                    }
                    Op::Create {
                        columns: k
                            .values
                            .iter()
                            .map(|(c, s)| (c.clone(), Source::parse(s)))
                            .collect(),
                        context,
                    }
                }
                "write" => {
                    if k.method.is_some() {
                        return Err(FieldError::new(
                            field("method"),
                            "a write runs no method; use operation = \"action\" to run one",
                        ));
                    }
                    if k.done_state.is_some() {
                        return Err(FieldError::new(
                            field("done_state"),
                            "a write has no done state; that is an action's",
                        ));
                    }
                    if !k.write.is_empty() {
                        return Err(FieldError::new(
                            field("write"),
                            "a write takes its fields in values = { … }",
                        ));
                    }
                    if k.values.is_empty() {
                        return Err(FieldError::new(field("values"), "empty; map at least one Odoo field to a payload field, such as { lot_name = \"lot\" }"));
                    }
                    if let Some(bad) = k
                        .values
                        .keys()
                        .find(|c| matches!(c.as_str(), "id" | ".id") || c.contains('/'))
                    {
                        return Err(FieldError::new(field("values"), format!("{bad:?}: name a field of the record, such as \"origin\" (a many2one takes the database id as it is)")));
                    }
                    Op::Write {
                        record: RecordSource::of(k, field)?,
                        values: k
                            .values
                            .iter()
                            .map(|(c, s)| (c.clone(), Source::parse(s)))
                            .collect(),
                        context,
                    }
                }
                "action" => {
                    let Some(method) = k.method.clone() else {
                        return Err(FieldError::new(
                            field("method"),
                            "missing; name the method to run, such as \"button_validate\"",
                        ));
                    };
                    if !method_name(&method) {
                        return Err(FieldError::new(field("method"), format!("{method:?} is not a public method name such as \"button_validate\" (Odoo does not let private ones, starting with '_', be called remotely)")));
                    }
                    Op::Action {
                        record: RecordSource::of(k, field)?,
                        write: k
                            .write
                            .iter()
                            .map(|(c, s)| (c.clone(), Source::parse(s)))
                            .collect(),
                        method,
                        done_state: k.done_state.clone().unwrap_or_else(|| "done".into()),
                        context,
                    }
                }
                other => {
                    return Err(FieldError::new(
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
                    models: vec![k.model.clone()],
                    op,
                },
            );
        }
        Ok(Kinds {
            map,
            missing: Default::default(),
            create_models,
        })
    }

    /// Whether `odoo.create` may create a record of `model` here, and if not, why.
    pub fn create_allowed(&self, model: &str) -> Result<(), NotAllowed> {
        let exact = self.create_models.iter().any(|m| m == model);
        if exact {
            return Ok(());
        }
        if security_model(model) {
            return Err(NotAllowed::SecurityModel {
                model: model.to_string(),
            });
        }
        let matched = self.create_models.iter().any(|p| {
            p.strip_suffix('*')
                .is_some_and(|prefix| model.starts_with(prefix))
        });
        if matched {
            return Ok(());
        }
        Err(if self.create_models.is_empty() {
            NotAllowed::NoModels {
                model: model.to_string(),
            }
        } else {
            NotAllowed::NotListed {
                model: model.to_string(),
                allowed: self.create_models.join(", "),
            }
        })
    }

    /// Whether `odoo.create` may write `field` of `model`, which Odoo says is of type `kind`
    /// referring to `relation`. A one2many or many2many value links existing records (by
    /// external id, database id or name) and so changes them or what they grant: one of a
    /// security model (`res.partner`'s `user_ids` moves a user onto the new partner; a group's
    /// `users` grants it) is written only when `[apply.kinds."odoo.create"] models` names that
    /// model exactly. A many2one only refers to a record, and is let through.
    pub fn link_allowed(
        &self,
        model: &str,
        field: &str,
        kind: &str,
        relation: Option<&str>,
    ) -> Result<(), NotAllowed> {
        let Some(relation) = relation else {
            return Ok(());
        };
        if !matches!(kind, "one2many" | "many2many") || !security_model(relation) {
            return Ok(());
        }
        if self.create_models.iter().any(|m| m == relation) {
            return Ok(());
        }
        Err(NotAllowed::SecurityLink {
            model: model.to_string(),
            field: field.to_string(),
            kind: kind.to_string(),
            relation: relation.to_string(),
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.map.keys().map(String::as_str).collect()
    }

    /// Every model the kinds need in Odoo.
    pub fn models(&self) -> BTreeSet<String> {
        self.map
            .values()
            .flat_map(|m| m.models.iter().cloned())
            .collect()
    }

    /// Marks the kinds that need a model in `absent` (models the Odoo applied to lacks): they
    /// are refused from now on, at ingest too, naming the kind and the model. Says which kinds
    /// were newly marked, with the message.
    pub fn mark_missing(&self, absent: &BTreeSet<String>) -> Vec<(String, String)> {
        let mut missing = self.missing.write().expect("not poisoned");
        let mut newly = Vec::new();
        for (kind, m) in &self.map {
            let lacking: Vec<&str> = m
                .models
                .iter()
                .filter(|model| absent.contains(*model))
                .map(String::as_str)
                .collect();
            if lacking.is_empty() {
                missing.remove(kind);
                continue;
            }
            let message = format!(
                "kind {kind:?} cannot be applied: this Odoo has no model {} (its app is not installed; Odoo Community has no quality.check); install it, or stop sending {kind:?}",
                lacking.join(", ")
            );
            if missing.get(kind) != Some(&message) {
                newly.push((kind.clone(), message.clone()));
            }
            missing.insert(kind.clone(), message);
        }
        newly
    }

    /// Whether any kind is refused for a model the Odoo lacked.
    pub fn any_missing(&self) -> bool {
        !self.missing.read().expect("not poisoned").is_empty()
    }

    /// Why `kind` cannot be applied in this Odoo, when its model is missing there.
    pub fn unavailable(&self, kind: &str) -> Option<String> {
        self.missing
            .read()
            .expect("not poisoned")
            .get(kind)
            .cloned()
    }

    /// What `kind` with `payload` does, or why it cannot be applied: the payload field (or
    /// `kind`) and the message.
    pub fn step(&self, kind: &str, payload: &Value) -> Result<Step, FieldError> {
        let Some(m) = self.map.get(kind) else {
            return Err(FieldError::new(
                "kind",
                format!(
                    "unknown kind {kind:?}; this plant applies {} (add others in [apply.kinds] of plant.toml)",
                    self.names().join(", ")
                ),
            ));
        };
        if let Some(why) = self.unavailable(kind) {
            return Err(FieldError::new("kind", why));
        }
        let obj = payload
            .as_object()
            .ok_or_else(|| FieldError::new("payload", "must be a JSON object"))?;
        let model = m.models.first().cloned().unwrap_or_default();
        match &m.op {
            Op::Generic => generic(obj),
            Op::Shipped(kind) => kind.step(obj),
            Op::Create { columns, context } => Ok(Step::Create {
                model,
                columns: create_columns(obj, columns)?,
                context: context.clone(),
            }),
            Op::Write {
                record,
                values,
                context,
            } => Ok(Step::Write {
                record: record_of(&model, obj, record)?,
                values: field_values(obj, values)?,
                model,
                context: context.clone(),
            }),
            Op::Action {
                record,
                write,
                method,
                done_state,
                context,
            } => Ok(Step::Action {
                record: record_of(&model, obj, record)?,
                write: field_values(obj, write)?,
                model,
                method: method.clone(),
                done_state: done_state.clone(),
                context: context.clone(),
            }),
        }
    }
}

/// `[apply.kinds."odoo.create"]`: only `models`, each a model name or a pattern.
fn generic_models(
    k: &KindConfig,
    field: impl Fn(&str) -> String,
) -> Result<Vec<String>, FieldError> {
    let plain = KindConfig {
        models: k.models.clone(),
        ..KindConfig::default()
    };
    if *k != plain {
        return Err(FieldError::new(field("models"), "odoo.create is shipped: its section takes only models = [\"res.partner\", ...], the models it may create"));
    }
    if let Some(bad) = k.models.iter().find(|m| !model_pattern(m)) {
        return Err(FieldError::new(
            field("models"),
            format!("{bad:?} is not a model name such as \"res.partner\" or a pattern such as \"stock.*\""),
        ));
    }
    Ok(k.models.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(model: &str, c: &str) -> Cell {
        Cell::Id {
            model: model.into(),
            by: Ref::Code(c.into()),
        }
    }

    #[test]
    fn shipped_kinds_become_steps_and_bad_payloads_name_the_field() {
        let kinds = Kinds::new(&BTreeMap::new()).unwrap();
        // Records by code, barcode, external id or database id.
        let step = kinds
            .step(
                "stock.move",
                &json!({"product": "PLT-BOLT", "quantity": 2.5, "location": "WH/Stock", "location_dest_xmlid": "stock.stock_location_customers", "reference": "scan 7"}),
            )
            .unwrap();
        assert_eq!(
            step,
            Step::Move {
                columns: vec![
                    ("product_id/.id".into(), code("product.product", "PLT-BOLT")),
                    ("product_uom_qty".into(), Cell::Text("2.5".into())),
                    ("location_id/.id".into(), code("stock.location", "WH/Stock")),
                    (
                        "location_dest_id/.id".into(),
                        Cell::Id {
                            model: "stock.location".into(),
                            by: Ref::Xmlid("stock.stock_location_customers".into())
                        }
                    ),
                ],
                reference: Some("scan 7".into()),
            }
        );
        let step = kinds
            .step("stock.picking.validate", &json!({"picking": "WH/IN/00012", "lines": [{"product_id": 4, "quantity": 30}], "backorder": false}))
            .unwrap();
        assert_eq!(
            step,
            Step::Validate {
                picking: Ref::Code("WH/IN/00012".into()),
                lines: vec![(Ref::Id(4), 30.0)],
                backorder: false
            }
        );
        assert_eq!(
            kinds
                .step("mrp.production.done", &json!({"production_id": 4}))
                .unwrap(),
            Step::Produce {
                production: Ref::Id(4),
                quantity: None,
                backorder: true
            }
        );
        // Times reach Odoo in UTC, in its format; Odoo derives the duration from them.
        let Step::Create {
            model,
            columns,
            context,
        } = kinds
            .step(
                "workorder.time",
                &json!({"workorder_xmlid": "plant.wo_1", "started_at": "2026-12-06T08:00:00+01:00", "minutes": 45}),
            )
            .unwrap()
        else {
            panic!("a create")
        };
        assert_eq!(model, "mrp.workcenter.productivity");
        assert_eq!(context, Map::from_iter([("tz".to_string(), json!("UTC"))]));
        let text = |c: &str| columns.iter().find(|(k, _)| k == c).map(|(_, v)| v.clone());
        assert_eq!(
            text("date_start"),
            Some(Cell::Text("2026-12-06 07:00:00".into()))
        );
        assert_eq!(
            text("date_end"),
            Some(Cell::Text("2026-12-06 07:45:00".into()))
        );
        assert!(matches!(
            text("workcenter_id/.id"),
            Some(Cell::FieldOf { .. })
        ));
        assert!(matches!(text("loss_id/.id"), Some(Cell::First { .. })));
        let Step::Create { columns, .. } = kinds
            .step(
                "workorder.time",
                &json!({"workorder_id": 3, "started_at": "2026-12-06 06:00:00", "ended_at": "2026-12-06T07:30:00Z"}),
            )
            .unwrap()
        else {
            panic!("a create")
        };
        assert!(columns.contains(&(
            "date_start".into(),
            Cell::Text("2026-12-06 06:00:00".into())
        )));
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
                    ("active".into(), Cell::Text("1".into())),
                    ("name".into(), Cell::Text("Acme".into()))
                ],
                context: Map::new(),
            }
        );

        for (kind, payload, field, says) in [
            ("scan", json!({}), "kind", "unknown kind \"scan\""),
            (
                "stock.move",
                json!({"quantity": 1, "location_id": 1, "location_dest_id": 2}),
                "payload",
                "give product",
            ),
            (
                "stock.move",
                json!({"product": "A", "product_id": 3, "quantity": 1, "location_id": 1, "location_dest_id": 2}),
                "payload.product",
                "once",
            ),
            (
                "stock.move",
                json!({"product_id": {"id": 1}, "quantity": 1, "location_id": 1, "location_dest_id": 2}),
                "payload.product_id",
                "positive integer",
            ),
            (
                "stock.move",
                json!({"product": "A", "quantity": 0, "location_id": 1, "location_dest_id": 2}),
                "payload.quantity",
                "more than 0",
            ),
            (
                "stock.move",
                json!({"product": "A", "quantity": 1, "location_xmlid": "no dot", "location_dest_id": 2}),
                "payload.location_xmlid",
                "module.name",
            ),
            (
                "stock.picking.validate",
                json!({}),
                "payload",
                "give picking",
            ),
            (
                "stock.picking.validate",
                json!({"picking_id": -3}),
                "payload.picking_id",
                "positive integer",
            ),
            (
                "stock.picking.validate",
                json!({"picking": "P", "lines": []}),
                "payload.lines",
                "non-empty",
            ),
            (
                "stock.picking.validate",
                json!({"picking": "P", "lines": [{"product": "A"}]}),
                "payload.lines[0].quantity",
                "required",
            ),
            (
                "stock.picking.validate",
                json!({"picking": "P", "backorder": "no"}),
                "payload.backorder",
                "true or false",
            ),
            (
                "workorder.time",
                json!({"workorder_id": 1, "minutes": 5}),
                "payload",
                "started_at",
            ),
            (
                "workorder.time",
                json!({"workorder_id": 1, "started_at": "2026-12-06T08:00:00", "minutes": 5}),
                "payload.started_at",
                "no UTC offset",
            ),
            (
                "workorder.time",
                json!({"workorder_id": 1, "started_at": "yesterday", "minutes": 5}),
                "payload.started_at",
                "not a time",
            ),
            (
                "workorder.time",
                json!({"workorder": "WO-1", "started_at": "2026-12-06T08:00:00Z", "minutes": 5}),
                "payload.workorder",
                "no code",
            ),
            (
                "workorder.time",
                json!({"workorder_id": 1, "started_at": "2026-12-06T08:00:00Z", "ended_at": "2026-12-06T07:00:00Z"}),
                "payload.ended_at",
                "before",
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
            let FieldError {
                field: f,
                message: m,
            } = kinds.step(kind, &payload).unwrap_err();
            assert_eq!(f, field, "{kind} {payload}: {m}");
            assert!(
                m.contains(says),
                "{kind} {payload}: {m:?} should say {says:?}"
            );
        }
    }

    #[test]
    fn a_kind_whose_model_odoo_lacks_is_refused_naming_both() {
        let kinds = Kinds::new(&BTreeMap::new()).unwrap();
        let shared = kinds.clone();
        let payload = json!({"product": "A", "result": "pass"});
        assert!(kinds.step("quality.check", &payload).is_ok());
        let absent = BTreeSet::from(["quality.check".to_string()]);
        let newly = shared.mark_missing(&absent);
        assert_eq!(newly.len(), 1, "{newly:?}");
        // A clone (the ingest API's) sees it too; the other kinds are untouched.
        let FieldError { field, message } = kinds.step("quality.check", &payload).unwrap_err();
        assert_eq!(field, "kind");
        assert!(message.contains("no model quality.check"), "{message}");
        assert!(kinds
            .step("mrp.production.done", &json!({"production": "MO/1"}))
            .is_ok());
        // Said once; and taken back when the Odoo has it after all.
        assert!(shared.mark_missing(&absent).is_empty());
        shared.mark_missing(&BTreeSet::new());
        assert!(kinds.step("quality.check", &payload).is_ok());
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
                columns: vec![("product_uom_qty".into(), Cell::Text("3".into()))],
                context: Map::new(),
            }
        );
        let kinds = parse("[\"lot.rename\"]\nmodel = \"stock.lot\"\noperation = \"write\"\nrecord_name = \"lot\"\nvalues = { ref = \"code\", note = \"note?\" }\n").unwrap();
        assert_eq!(
            kinds
                .step("lot.rename", &json!({"lot": "L-7", "code": "X7"}))
                .unwrap(),
            Step::Write {
                model: "stock.lot".into(),
                record: Ref::Name("L-7".into()),
                values: Map::from_iter([("ref".to_string(), json!("X7"))]),
                context: Map::new(),
            }
        );
        assert_eq!(
            kinds
                .step("lot.rename", &json!({"code": "X7"}))
                .unwrap_err(),
            FieldError::new("payload.lot", "is required")
        );
        assert_eq!(
            kinds
                .step("lot.rename", &json!({"lot": "L-7", "code": [1]}))
                .unwrap_err()
                .field,
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
            assert_eq!(parse(text).unwrap_err().field, field, "{text}");
        }
    }
}
