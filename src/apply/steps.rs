//! Carrying out [`Step`]s in one Odoo, idempotently: every step first looks whether it was
//! done (an external id `plantd.<plant>_<seq>`, a record's state), so that a retry after a crash
//! or a lost answer never does it twice. Only Odoo's public methods are called (private ones
//! cannot be called over RPC since Odoo 17), and a wizard in an answer is a refusal with its
//! name, never left open. References ([`Ref`]) are resolved in this Odoo and cached on the
//! connection.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::kinds::mapping::{code_fields, Cell, Ref, Step};
use crate::odoo::{Client, OdooError};

/// The context of the calls that validate a transfer: no backorder question (the step says
/// whether there is one), no SMS or expiry wizard.
fn validate_context(pickings_without_backorder: &[i64]) -> Map<String, Value> {
    let mut ctx = machine_context(&Map::new());
    ctx.extend([
        ("skip_backorder".to_string(), json!(true)),
        ("skip_sms".to_string(), json!(true)),
        ("skip_expired".to_string(), json!(true)),
    ]);
    if !pickings_without_backorder.is_empty() {
        ctx.insert(
            "picking_ids_not_to_backorder".into(),
            json!(pickings_without_backorder),
        );
    }
    ctx
}

/// The context of every call of the apply: a kind's own `context` over plantd's defaults for
/// a machine's records. The one default: plantd's API user does not become a follower of each
/// record it creates (`mail_create_nosubscribe`; Odoo would otherwise subscribe it to every
/// partner and transfer, to be told of each later change). Chatter's creation note and the
/// tracking of changes stay, as they do for a person's records.
pub(super) fn machine_context(context: &Map<String, Value>) -> Map<String, Value> {
    let mut ctx = Map::from_iter([("mail_create_nosubscribe".to_string(), json!(true))]);
    ctx.extend(context.clone());
    ctx
}

fn with_context(context: &Map<String, Value>) -> Map<String, Value> {
    Map::from_iter([(
        "context".to_string(),
        Value::Object(machine_context(context)),
    )])
}

/// A method's answer that opens a wizard (a window action in a dialog, `target: new`) means
/// Odoo wants a question answered: the step did not happen. Other actions (show the backorder,
/// print a report) follow a step that did.
fn wizard(model: &str, method: &str, id: i64, answer: &Value) -> Result<(), OdooError> {
    if answer["type"] == "ir.actions.act_window" && answer["target"] == "new" {
        let res_model = answer["res_model"].as_str().unwrap_or("?");
        let name = answer["name"].as_str().unwrap_or_default();
        return Err(OdooError::Rejected(format!(
            "{model}.{method} on {id} asks a question in a wizard ({res_model}{}); plantd answers none: say in the payload or the kind's config what to do",
            if name.is_empty() { String::new() } else { format!(", {name:?}") }
        )));
    }
    Ok(())
}

/// The record `r` names in `model`, in this Odoo (looked up once per connection).
pub async fn resolve(c: &Client, model: &str, r: &Ref) -> Result<i64, OdooError> {
    if let Ref::Id(id) = r {
        return Ok(*id);
    }
    let key = format!("{model} {r:?}");
    if let Some(id) = c.cached(&key) {
        return Ok(id);
    }
    let id = match r {
        Ref::Id(id) => *id,
        Ref::Xmlid(x) => {
            let (module, name) = x.split_once('.').expect("checked at ingest");
            let rows = c
                .call(
                    "ir.model.data",
                    "search_read",
                    vec![json!([["module", "=", module], ["name", "=", name]])],
                    Map::from_iter([("fields".to_string(), json!(["model", "res_id"]))]),
                )
                .await?;
            let row = rows
                .as_array()
                .and_then(|a| a.first())
                .ok_or_else(|| OdooError::Missing(format!("no external id {x} (for a {model})")))?;
            if row["model"] != model {
                return Err(OdooError::Rejected(format!(
                    "external id {x} names a {}, not a {model}",
                    row["model"].as_str().unwrap_or("?")
                )));
            }
            row["res_id"]
                .as_i64()
                .ok_or_else(|| OdooError::Protocol(format!("external id {x}: {row}")))?
        }
        Ref::Code(code) => {
            let mut found = None;
            for field in code_fields(model) {
                if let Some(id) = one(
                    c,
                    model,
                    json!([[field, "=", code]]),
                    &format!("{field} {code:?}"),
                )
                .await?
                {
                    found = Some(id);
                    break;
                }
            }
            // A production split for a backorder is renamed NAME-001 (its backorder NAME-002):
            // a retry after that split still finds it.
            if found.is_none() && model == "mrp.production" {
                let ids = c
                    .call(
                        model,
                        "search",
                        vec![json!([["name", "=", format!("{code}-001")]])],
                        Map::from_iter([
                            ("limit".to_string(), json!(1)),
                            ("order".to_string(), json!("id")),
                        ]),
                    )
                    .await?;
                found = ids.get(0).and_then(Value::as_i64);
            }
            found.ok_or_else(|| {
                OdooError::Missing(match code_fields(model) {
                    ["name"] => format!("no {model} named {code:?}"),
                    fields => format!(
                        "no {model} {code:?} (looked up by {})",
                        fields.join(", then ")
                    ),
                })
            })?
        }
        Ref::Name(name) => one(
            c,
            model,
            json!([["name", "=", name]]),
            &format!("name {name:?}"),
        )
        .await?
        .ok_or_else(|| OdooError::Missing(format!("no {model} named {name:?}")))?,
    };
    c.remember(key, id);
    Ok(id)
}

/// The one record matching `domain`; none; or a refusal when several match.
async fn one(c: &Client, model: &str, domain: Value, what: &str) -> Result<Option<i64>, OdooError> {
    let ids = c
        .call(
            model,
            "search",
            vec![domain],
            Map::from_iter([("limit".to_string(), json!(2))]),
        )
        .await?;
    let ids: Vec<i64> = ids
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(*id)),
        _ => Err(OdooError::Rejected(format!(
            "several {model} records have {what}; name one by external id"
        ))),
    }
}

/// A many2one as read: `[id, "name"]` (Odoo) or the id.
fn many2one(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.get(0).and_then(Value::as_i64))
}

/// A cell's text in this Odoo.
async fn resolve_cell(c: &Client, cell: &Cell) -> Result<String, OdooError> {
    match cell {
        Cell::Text(t) => Ok(t.clone()),
        Cell::Id { model, by } => Ok(resolve(c, model, by).await?.to_string()),
        Cell::FieldOf {
            model,
            record,
            field,
        } => {
            let id = resolve(c, model, record).await?;
            let key = format!("{model} {id} {field}");
            if let Some(v) = c.cached(&key) {
                return Ok(v.to_string());
            }
            let rows = c
                .call_on(
                    model,
                    "read",
                    &[id],
                    Map::from_iter([("fields".to_string(), json!([field]))]),
                )
                .await?;
            let v = rows
                .get(0)
                .and_then(|row| many2one(&row[field.as_str()]))
                .ok_or_else(|| OdooError::Rejected(format!("{model} {id} has no {field}")))?;
            // Such as a workorder's work center, which does not change under it.
            c.remember(key, v);
            Ok(v.to_string())
        }
        Cell::First {
            model,
            domain,
            order,
        } => {
            let key = format!("{model} first {domain} {order}");
            if let Some(id) = c.cached(&key) {
                return Ok(id.to_string());
            }
            let ids = c
                .call(
                    model,
                    "search",
                    vec![domain.clone()],
                    Map::from_iter([
                        ("limit".to_string(), json!(1)),
                        ("order".to_string(), json!(order)),
                    ]),
                )
                .await?;
            let id = ids.get(0).and_then(Value::as_i64).ok_or_else(|| {
                OdooError::Missing(format!("no {model} matching {domain} in this Odoo"))
            })?;
            c.remember(key, id);
            Ok(id.to_string())
        }
    }
}

/// `load` columns with their cells resolved.
pub async fn resolve_columns(
    c: &Client,
    columns: &[(String, Cell)],
) -> Result<Vec<(String, String)>, OdooError> {
    let mut out = Vec::with_capacity(columns.len());
    for (column, cell) in columns {
        out.push((column.clone(), resolve_cell(c, cell).await?));
    }
    Ok(out)
}

/// The records created under external ids `plantd.NAME` for these names: name → (model, id).
pub async fn created_many(
    c: &Client,
    names: &[String],
) -> Result<BTreeMap<String, (String, i64)>, OdooError> {
    let found = c
        .call(
            "ir.model.data",
            "search_read",
            vec![json!([["module", "=", "plantd"], ["name", "in", names]])],
            Map::from_iter([("fields".to_string(), json!(["name", "model", "res_id"]))]),
        )
        .await?;
    Ok(found
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    Some((
                        r["name"].as_str()?.to_string(),
                        (r["model"].as_str()?.to_string(), r["res_id"].as_i64()?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// One `load` of rows (external id first, then the columns' cells); the ids, or Odoo's
/// messages when it rejected them (nothing of them stays).
async fn load(
    c: &Client,
    model: &str,
    columns: &[String],
    rows: Vec<Value>,
    context: &Map<String, Value>,
) -> Result<Result<Vec<i64>, String>, OdooError> {
    let mut fields = vec![json!("id")];
    fields.extend(columns.iter().map(|c| json!(c)));
    let expected = rows.len();
    let answer = c
        .call(
            model,
            "load",
            vec![Value::Array(fields), Value::Array(rows)],
            with_context(context),
        )
        .await?;
    match answer["ids"].as_array() {
        Some(ids) if ids.len() == expected => {
            Ok(Ok(ids.iter().filter_map(Value::as_i64).collect()))
        }
        Some(ids) => Err(OdooError::Protocol(format!(
            "{model}.load created {} records of {expected}",
            ids.len()
        ))),
        None => {
            let messages: Vec<&str> = answer["messages"]
                .as_array()
                .map(|m| m.iter().filter_map(|m| m["message"].as_str()).collect())
                .unwrap_or_default();
            if messages.is_empty() {
                return Err(OdooError::Protocol(format!(
                    "{model}.load answered {answer}"
                )));
            }
            Ok(Err(messages.join("; ")))
        }
    }
}

/// What a create or a move loads: its model, columns, the move's description (the reference,
/// else the external id) and the context.
struct LoadParts<'s> {
    model: &'s str,
    columns: &'s [(String, Cell)],
    description: Option<String>,
    context: Map<String, Value>,
}

fn load_parts<'s>(step: &'s Step, name: &str) -> Option<LoadParts<'s>> {
    match step {
        Step::Create {
            model,
            columns,
            context,
        } => Some(LoadParts {
            model,
            columns,
            description: None,
            context: context.clone(),
        }),
        Step::Move { columns, reference } => Some(LoadParts {
            model: "stock.move",
            columns,
            description: Some(
                reference
                    .clone()
                    .unwrap_or_else(|| format!("plantd.{name}")),
            ),
            context: Map::new(),
        }),
        _ => None,
    }
}

/// Creates (through one `load`) what a run of creates or moves of one model with the same
/// columns needs, after one look for their external ids; then, for moves, puts each in a
/// transfer of its own and validates them all at once. `Ok(false)`: Odoo rejected the run
/// as a whole (nothing of the load stayed; moves may wait in their transfers), so it is done
/// one by one to find the one.
pub async fn run_many(c: &Client, plant: &str, run: &[(u64, Step)]) -> Result<bool, OdooError> {
    let names: Vec<String> = run
        .iter()
        .map(|(seq, _)| format!("{plant}_{seq}"))
        .collect();
    let done = created_many(c, &names).await?;
    let mut model = "";
    let mut columns: Vec<String> = Vec::new();
    let mut context = Map::new();
    let mut rows = Vec::new();
    let mut moves = Vec::new();
    for ((_, step), name) in run.iter().zip(&names) {
        let Some(LoadParts {
            model: m,
            columns: cells,
            description: extra,
            context: ctx,
        }) = load_parts(step, name)
        else {
            continue;
        };
        context = ctx;
        if model.is_empty() {
            model = m;
            columns = cells.iter().map(|(col, _)| col.clone()).collect();
            if extra.is_some() {
                columns.push("name".into());
            }
        }
        if let Some((_, id)) = done.get(name) {
            moves.push(*id);
            continue;
        }
        let mut row = vec![json!(format!("plantd.{name}"))];
        match resolve_columns(c, cells).await {
            Ok(values) => row.extend(values.into_iter().map(|(_, v)| json!(v))),
            // A reference this Odoo lacks: one by one finds whose.
            Err(e) if !e.transient() => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some(description) = extra {
            row.push(json!(description));
        }
        rows.push(Value::Array(row));
    }
    if !rows.is_empty() {
        match load(c, model, &columns, rows, &context).await? {
            Ok(ids) => moves.extend(ids),
            Err(_) => return Ok(false),
        }
    }
    if model != "stock.move" {
        return Ok(true);
    }
    match finish_moves(c, &moves).await {
        Ok(()) => Ok(true),
        Err(e) if e.transient() => Err(e),
        Err(_) => Ok(false),
    }
}

/// What one call of `plantd.apply.run` (the plantd_apply module) did with the runs it was
/// given: how many it carried out, in order, and Odoo's message for the one after them when
/// Odoo refused it (`None`: the rest were not sent, or all went through).
#[derive(Debug, PartialEq)]
pub struct BatchOutcome {
    pub done: usize,
    pub refused: Option<String>,
}

/// Sends `runs` (each a run [`run_many`] would take, or a single create or move) to Odoo as
/// one `plantd.apply.run`: one round trip and one database transaction, the runs carried out
/// there in order with the same public methods. The runs are sent as far as their references
/// resolve here; a run with a reference this Odoo lacks (a record an earlier run of the same
/// batch makes, say) ends what is sent, and the caller goes on from it.
pub async fn run_batch(
    c: &Client,
    plant: &str,
    runs: &[&[(u64, Step)]],
) -> Result<BatchOutcome, OdooError> {
    let mut body = Vec::new();
    'runs: for run in runs {
        let mut fields: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        let mut spec = None;
        for (seq, step) in run.iter() {
            let name = format!("{plant}_{seq}");
            let Some(parts) = load_parts(step, &name) else {
                break 'runs;
            };
            let values = match resolve_columns(c, parts.columns).await {
                Ok(v) => v,
                Err(e) if e.transient() => return Err(e),
                Err(_) => break 'runs,
            };
            if spec.is_none() {
                fields = values.iter().map(|(k, _)| k.clone()).collect();
                if parts.description.is_some() {
                    fields.push("name".into());
                }
                spec = Some((parts.model, parts.context.clone(), step_is_move(step)));
            }
            let mut row = vec![json!(format!("plantd.{name}"))];
            row.extend(values.into_iter().map(|(_, v)| json!(v)));
            if let Some(d) = parts.description {
                row.push(json!(d));
            }
            rows.push(Value::Array(row));
        }
        let Some((model, context, moves)) = spec else {
            break;
        };
        body.push(json!({
            "model": model,
            "fields": fields,
            "rows": rows,
            "context": machine_context(&context),
            "moves": moves,
        }));
    }
    if body.is_empty() {
        return Ok(BatchOutcome {
            done: 0,
            refused: None,
        });
    }
    let answers = c
        .call(
            super::odoo_module::MODEL,
            "run",
            vec![Value::Array(body)],
            Map::new(),
        )
        .await?;
    let answers = answers.as_array().ok_or_else(|| {
        OdooError::Protocol(format!("plantd.apply.run answered {answers}, not a list"))
    })?;
    let done = answers.iter().take_while(|a| a["ids"].is_array()).count();
    let refused = answers
        .get(done)
        .map(|a| a["error"].as_str().unwrap_or("refused").to_string());
    Ok(BatchOutcome { done, refused })
}

fn step_is_move(step: &Step) -> bool {
    matches!(step, Step::Move { .. })
}

/// Validates moves: each one not yet in a transfer gets one of its own (an internal transfer,
/// a receipt from a supplier, a delivery to a customer, by their locations), then all their
/// transfers are validated in one call, in full and without a backorder.
async fn finish_moves(c: &Client, moves: &[i64]) -> Result<(), OdooError> {
    let fields = json!([
        "state",
        "picking_id",
        "location_id",
        "location_dest_id",
        "name",
        "product_uom_qty"
    ]);
    let read = |ids: Vec<i64>| {
        let fields = fields.clone();
        async move {
            let rows = c
                .call(
                    "stock.move",
                    "read",
                    vec![json!(ids)],
                    Map::from_iter([("fields".to_string(), fields)]),
                )
                .await?;
            Ok::<_, OdooError>(rows.as_array().cloned().unwrap_or_default())
        }
    };
    let rows = read(moves.to_vec()).await?;
    let open: Vec<&Value> = rows.iter().filter(|r| r["state"] != "done").collect();
    if open.is_empty() {
        return Ok(());
    }
    let mut new_pickings = Vec::new();
    let mut pickings: Vec<i64> = Vec::new();
    for row in &open {
        match many2one(&row["picking_id"]) {
            Some(p) => pickings.push(p),
            None => {
                let (from, to) = (
                    many2one(&row["location_id"]).unwrap_or_default(),
                    many2one(&row["location_dest_id"]).unwrap_or_default(),
                );
                new_pickings.push(json!({
                    "picking_type_id": picking_type(c, from, to).await?,
                    "location_id": from,
                    "location_dest_id": to,
                    "origin": row["name"],
                    "move_ids": [[4, row["id"]]],
                }));
            }
        }
    }
    if !new_pickings.is_empty() {
        let ids = c
            .call(
                "stock.picking",
                "create",
                vec![Value::Array(new_pickings)],
                with_context(&Map::new()),
            )
            .await?;
        pickings.extend(
            ids.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64),
        );
    }
    pickings.sort_unstable();
    pickings.dedup();
    let Some(&first) = pickings.first() else {
        return Err(OdooError::Protocol(
            "stock.picking.create gave no ids for the moves' transfers".into(),
        ));
    };
    // Confirmed first (which reserves what is on hand), then each move picked in full: Odoo
    // fills in the demand only for a move with nothing reserved, so a move of 10 with 4 on hand
    // would otherwise move 4 and drop the rest.
    c.call_on("stock.picking", "action_confirm", &pickings, Map::new())
        .await?;
    let demands: Vec<(i64, f64)> = open
        .iter()
        .filter_map(|r| Some((r["id"].as_i64()?, r["product_uom_qty"].as_f64()?)))
        .collect();
    pick_in_full(c, &demands).await?;
    let answer = c
        .call_on(
            "stock.picking",
            "button_validate",
            &pickings,
            Map::from_iter([(
                "context".to_string(),
                Value::Object(validate_context(&pickings)),
            )]),
        )
        .await?;
    wizard("stock.picking", "button_validate", first, &answer)?;
    let after = read(moves.to_vec()).await?;
    if let Some(row) = after.iter().find(|r| r["state"] != "done") {
        return Err(OdooError::Rejected(format!(
            "stock.move {} is {} after its transfer was validated, not done",
            row["id"], row["state"]
        )));
    }
    Ok(())
}

/// Sets each move's picked quantity (move, quantity): one write per distinct quantity.
async fn pick_in_full(c: &Client, quantities: &[(i64, f64)]) -> Result<(), OdooError> {
    let mut by_quantity: BTreeMap<String, (f64, Vec<i64>)> = BTreeMap::new();
    for (m, q) in quantities {
        by_quantity
            .entry(format!("{q}"))
            .or_insert((*q, vec![]))
            .1
            .push(*m);
    }
    for (q, ids) in by_quantity.into_values() {
        c.call_on(
            "stock.move",
            "write",
            &ids,
            Map::from_iter([(
                "vals".to_string(),
                json!({"quantity": q, "picked": q > 0.0}),
            )]),
        )
        .await?;
    }
    Ok(())
}

/// The operation type for a transfer between two locations: a receipt from a supplier, a
/// delivery to a customer, else internal; of the source's (or destination's) warehouse.
async fn picking_type(c: &Client, from: i64, to: i64) -> Result<i64, OdooError> {
    let key = format!("picking type {from} {to}");
    if let Some(id) = c.cached(&key) {
        return Ok(id);
    }
    let rows = c
        .call(
            "stock.location",
            "read",
            vec![json!([from, to])],
            Map::from_iter([("fields".to_string(), json!(["usage", "warehouse_id"]))]),
        )
        .await?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let get = |id: i64| {
        rows.iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (a, b) = (get(from), get(to));
    let (code, warehouse) = if a["usage"] == "supplier" {
        ("incoming", many2one(&b["warehouse_id"]))
    } else if b["usage"] == "customer" {
        ("outgoing", many2one(&a["warehouse_id"]))
    } else {
        (
            "internal",
            many2one(&a["warehouse_id"]).or_else(|| many2one(&b["warehouse_id"])),
        )
    };
    let mut domain = vec![json!(["code", "=", code])];
    if let Some(w) = warehouse {
        domain.push(json!(["warehouse_id", "=", w]));
    }
    let ids = c
        .call(
            "stock.picking.type",
            "search",
            vec![Value::Array(domain)],
            Map::from_iter([
                ("limit".to_string(), json!(1)),
                ("order".to_string(), json!("sequence, id")),
            ]),
        )
        .await?;
    let id = ids.get(0).and_then(Value::as_i64).ok_or_else(|| {
        OdooError::Missing(format!(
            "no {code} operation type for a transfer from location {from} to {to}"
        ))
    })?;
    c.remember(key, id);
    Ok(id)
}

/// Carries out one step, idempotently; says what it did.
pub async fn run_step(c: &Client, plant: &str, seq: u64, step: &Step) -> Result<String, OdooError> {
    match step {
        Step::Create { .. } | Step::Move { .. } => {
            let name = format!("{plant}_{seq}");
            let found = created_many(c, std::slice::from_ref(&name)).await?;
            let (model, id) = match found.get(&name) {
                Some((model, id)) => (model.clone(), *id),
                None => {
                    let LoadParts {
                        model,
                        columns: cells,
                        description,
                        context,
                    } = load_parts(step, &name).expect("a create or a move");
                    let resolved = resolve_columns(c, cells).await?;
                    let mut columns: Vec<String> =
                        resolved.iter().map(|(k, _)| k.clone()).collect();
                    let mut row = vec![json!(format!("plantd.{name}"))];
                    row.extend(resolved.into_iter().map(|(_, v)| json!(v)));
                    if let Some(d) = description {
                        columns.push("name".into());
                        row.push(json!(d));
                    }
                    match load(c, model, &columns, vec![Value::Array(row)], &context).await? {
                        Ok(ids) => (model.to_string(), ids.first().copied().unwrap_or_default()),
                        Err(messages) => {
                            // A call an earlier try abandoned may have committed meanwhile (the
                            // external id then collides): that is this transaction, applied.
                            match created_many(c, std::slice::from_ref(&name))
                                .await?
                                .get(&name)
                            {
                                Some((model, id)) => (model.clone(), *id),
                                None => return Err(OdooError::Rejected(messages)),
                            }
                        }
                    }
                }
            };
            if let Step::Move { .. } = step {
                finish_moves(c, &[id]).await?;
                return Ok(format!("stock.move {id} done as plantd.{name}"));
            }
            Ok(format!("{model} {id} created as plantd.{name}"))
        }
        Step::Write {
            model,
            record,
            values,
            context,
        } => {
            let id = resolve(c, model, record).await?;
            let mut kwargs = with_context(context);
            kwargs.insert("vals".to_string(), Value::Object(values.clone()));
            c.call_on(model, "write", &[id], kwargs).await?;
            Ok(format!("{model} {id} written"))
        }
        Step::Action {
            model,
            record,
            write,
            method,
            done_state,
            context,
        } => {
            let id = resolve(c, model, record).await?;
            let state = state_of(c, model, id).await?;
            if state == *done_state {
                return Ok(format!("{model} {id} was {done_state} already"));
            }
            if !write.is_empty() {
                let mut kwargs = with_context(context);
                kwargs.insert("vals".to_string(), Value::Object(write.clone()));
                c.call_on(model, "write", &[id], kwargs).await?;
            }
            let answer = c
                .call_on(model, method, &[id], with_context(context))
                .await?;
            wizard(model, method, id, &answer)?;
            let after = state_of(c, model, id).await?;
            if after != *done_state {
                return Err(OdooError::Rejected(format!(
                    "{model}.{method} on {id} left it {after:?}, not {done_state:?}"
                )));
            }
            Ok(format!("{model} {id} {method}: {done_state}"))
        }
        Step::Validate {
            picking,
            lines,
            backorder,
        } => validate(c, picking, lines, *backorder).await,
        Step::Produce {
            production,
            quantity,
            backorder,
        } => produce(c, production, *quantity, *backorder).await,
    }
}

/// A record's `state`.
async fn state_of(c: &Client, model: &str, id: i64) -> Result<String, OdooError> {
    let rows = c
        .call_on(
            model,
            "read",
            &[id],
            Map::from_iter([("fields".to_string(), json!(["state"]))]),
        )
        .await?;
    match rows.get(0) {
        Some(row) => Ok(row["state"].as_str().unwrap_or_default().to_string()),
        None => Err(OdooError::Missing(format!("no {model} {id}"))),
    }
}

/// `stock.picking.validate`.
async fn validate(
    c: &Client,
    picking: &Ref,
    lines: &[(Ref, f64)],
    backorder: bool,
) -> Result<String, OdooError> {
    let id = resolve(c, "stock.picking", picking).await?;
    let mut state = state_of(c, "stock.picking", id).await?;
    match state.as_str() {
        "done" => return Ok(format!("stock.picking {id} was done already")),
        "cancel" => {
            return Err(OdooError::Rejected(format!(
                "stock.picking {id} is cancelled; it cannot be validated"
            )))
        }
        "draft" => {
            c.call_on("stock.picking", "action_confirm", &[id], Map::new())
                .await?;
            state = state_of(c, "stock.picking", id).await?;
        }
        _ => {}
    }
    let rows = c
        .call(
            "stock.move",
            "search_read",
            vec![json!([
                ["picking_id", "=", id],
                ["state", "not in", ["done", "cancel"]]
            ])],
            Map::from_iter([
                (
                    "fields".to_string(),
                    json!(["product_id", "product_uom_qty"]),
                ),
                ("order".to_string(), json!("id")),
            ]),
        )
        .await?;
    let moves: Vec<(i64, i64, f64)> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["id"].as_i64()?,
                many2one(&r["product_id"])?,
                r["product_uom_qty"].as_f64().unwrap_or(0.0),
            ))
        })
        .collect();
    if moves.is_empty() {
        return Err(OdooError::Rejected(format!(
            "stock.picking {id} ({state}) has no moves to validate"
        )));
    }
    // What each move gets: its demand, or the payload's quantity of its product, filling the
    // product's moves in order (the last one takes what is left).
    let mut quantities: Vec<(i64, f64)> =
        moves.iter().map(|(m, _, demand)| (*m, *demand)).collect();
    if !lines.is_empty() {
        let mut wanted: BTreeMap<i64, f64> = BTreeMap::new();
        for (product, q) in lines {
            *wanted
                .entry(resolve(c, "product.product", product).await?)
                .or_default() += q;
        }
        for product in wanted.keys() {
            if !moves.iter().any(|(_, p, _)| p == product) {
                return Err(OdooError::Rejected(format!(
                    "stock.picking {id} has no move of product {product}"
                )));
            }
        }
        for (i, (m, p, demand)) in moves.iter().enumerate() {
            let left = wanted.get(p).copied().unwrap_or(0.0);
            let last = !moves[i + 1..].iter().any(|(_, q, _)| q == p);
            let q = if last { left } else { left.min(*demand) };
            if let Some(w) = wanted.get_mut(p) {
                *w -= q;
            }
            quantities[i] = (*m, q);
        }
    }
    pick_in_full(c, &quantities).await?;
    let no_backorder = if backorder { vec![] } else { vec![id] };
    let answer = c
        .call_on(
            "stock.picking",
            "button_validate",
            &[id],
            Map::from_iter([(
                "context".to_string(),
                Value::Object(validate_context(&no_backorder)),
            )]),
        )
        .await?;
    wizard("stock.picking", "button_validate", id, &answer)?;
    let after = state_of(c, "stock.picking", id).await?;
    if after != "done" {
        return Err(OdooError::Rejected(format!(
            "stock.picking {id} is {after:?} after button_validate, not done"
        )));
    }
    let partial = quantities
        .iter()
        .zip(&moves)
        .any(|((_, q), (_, _, demand))| q < demand);
    Ok(format!(
        "stock.picking {id} validated{}",
        match (partial, backorder) {
            (false, _) => "",
            (true, true) => " in part; the rest is in a backorder",
            (true, false) => " in part; no backorder",
        }
    ))
}

/// `mrp.production.done`.
async fn produce(
    c: &Client,
    production: &Ref,
    quantity: Option<f64>,
    backorder: bool,
) -> Result<String, OdooError> {
    const MODEL: &str = "mrp.production";
    let id = resolve(c, MODEL, production).await?;
    let read = || async {
        let rows = c
            .call_on(
                MODEL,
                "read",
                &[id],
                Map::from_iter([("fields".to_string(), json!(["state", "product_qty"]))]),
            )
            .await?;
        rows.get(0)
            .cloned()
            .ok_or_else(|| OdooError::Missing(format!("no {MODEL} {id}")))
    };
    let row = read().await?;
    match row["state"].as_str().unwrap_or_default() {
        "done" => return Ok(format!("{MODEL} {id} was done already")),
        "cancel" => {
            return Err(OdooError::Rejected(format!(
                "{MODEL} {id} is cancelled; it cannot be produced"
            )))
        }
        "draft" => {
            c.call_on(MODEL, "action_confirm", &[id], Map::new())
                .await?;
        }
        _ => {}
    }
    let planned = row["product_qty"].as_f64().unwrap_or(0.0);
    let q = quantity.unwrap_or(planned);
    c.call_on(
        MODEL,
        "write",
        &[id],
        Map::from_iter([("vals".to_string(), json!({"qty_producing": q}))]),
    )
    .await?;
    // What the form's onchange does: the components consumed as the bill of materials says.
    c.call_on(MODEL, "set_qty_producing", &[id], Map::new())
        .await?;
    let mut context = Map::from_iter([("skip_backorder".to_string(), json!(true))]);
    if backorder && q < planned {
        context.insert("mo_ids_to_backorder".into(), json!([id]));
    }
    let answer = c
        .call_on(
            MODEL,
            "button_mark_done",
            &[id],
            Map::from_iter([("context".to_string(), Value::Object(context))]),
        )
        .await?;
    wizard(MODEL, "button_mark_done", id, &answer)?;
    let after = read().await?;
    if after["state"] != "done" {
        return Err(OdooError::Rejected(format!(
            "{MODEL} {id} is {} after button_mark_done, not done",
            after["state"]
        )));
    }
    Ok(format!(
        "{MODEL} {id}: {q} produced{}",
        if q < planned {
            if backorder {
                "; the rest is in a backorder"
            } else {
                "; no backorder"
            }
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_context_goes_over_plantds_defaults() {
        assert_eq!(
            Value::Object(machine_context(&Map::new())),
            json!({"mail_create_nosubscribe": true})
        );
        let kind = Map::from_iter([
            ("mail_create_nosubscribe".to_string(), json!(false)),
            ("skip_sms".to_string(), json!(true)),
        ]);
        assert_eq!(
            Value::Object(with_context(&kind)),
            json!({"context": {"mail_create_nosubscribe": false, "skip_sms": true}})
        );
        assert_eq!(
            validate_context(&[7])["mail_create_nosubscribe"],
            json!(true)
        );
    }
}
