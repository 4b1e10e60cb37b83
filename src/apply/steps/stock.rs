//! Stock and manufacturing in Odoo: the moves' transfers confirmed, picked and validated
//! (together for a batch), a transfer validated in full or in part, a production marked done;
//! each refuses a wizard by name rather than leave it open.

use super::*;

/// Validates moves: each one not yet in a transfer gets one of its own (an internal transfer,
/// a receipt from a supplier, a delivery to a customer, by their locations), then all their
/// transfers are validated in one call, in full and without a backorder.
pub(super) async fn finish_moves(c: &Client, moves: &[i64]) -> Result<(), OdooError> {
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
pub(super) async fn pick_in_full(c: &Client, quantities: &[(i64, f64)]) -> Result<(), OdooError> {
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
pub(super) async fn picking_type(c: &Client, from: i64, to: i64) -> Result<i64, OdooError> {
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

/// A record's `state`.
pub(super) async fn state_of(c: &Client, model: &str, id: i64) -> Result<String, OdooError> {
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
pub(super) async fn validate(
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
pub(super) async fn produce(
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
