//! Who may send what: the kinds on a device's token ([`Scope`]) and the models `odoo.create`
//! may create ([`Kinds::create_allowed`]). Checked for every item of a request before any is
//! journaled, so a refusal changes nothing. Pure: table- and property-tested below.

use serde_json::Value;

use super::ApiError;
use crate::journal::NewTransaction;
use crate::kinds::mapping::{Kinds, NotAllowed};
use crate::tokens::{Scope, GENERIC_CREATE};

/// Whether `device`, holding `scope`, may send transaction `t` (item `index` of an array when
/// `in_array`). `kinds` is the plant's `[apply]`, when it has one.
pub fn check(
    device: &str,
    scope: &Scope,
    kinds: Option<&Kinds>,
    t: &NewTransaction,
    index: usize,
    in_array: bool,
) -> Result<(), ApiError> {
    let name = |f: &str| {
        if in_array {
            format!("[{index}].{f}")
        } else {
            f.to_string()
        }
    };
    if !scope.allows(&t.kind) {
        let how = if t.kind == GENERIC_CREATE {
            "odoo.create is granted only by name"
        } else {
            "a token's kinds are set when it is made"
        };
        return Err(ApiError::Forbidden {
            code: "kind_not_allowed",
            field: Some(name("kind")),
            message: format!(
                "device {device:?} may not send kind {:?}: its token allows {} ({how}: an admin revokes it and makes a new one with `plantd token create --device {device} --kinds KIND,...`)",
                t.kind,
                scope.describe()
            ),
        });
    }
    if t.kind != GENERIC_CREATE {
        return Ok(());
    }
    let payload: Value = serde_json::from_str(&t.payload).unwrap_or(Value::Null);
    let Some(model) = payload.get("model").and_then(Value::as_str) else {
        return Err(ApiError::invalid(
            "invalid_payload",
            name("payload.model"),
            "an Odoo model name, such as \"res.partner\", is required",
        ));
    };
    let allowed = match kinds {
        Some(k) => k.create_allowed(model),
        None => Err(NotAllowed::NoApply {
            model: model.to_string(),
        }),
    };
    allowed.map_err(|e| ApiError::Forbidden {
        code: "model_not_allowed",
        field: Some(name("payload.model")),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn kinds(toml_text: &str) -> Kinds {
        let k: BTreeMap<String, crate::kinds::mapping::KindConfig> =
            toml::from_str(toml_text).unwrap();
        Kinds::new(&k).unwrap()
    }

    fn t(kind: &str, payload: Value) -> NewTransaction {
        NewTransaction {
            key: "k".into(),
            device: "d".into(),
            kind: kind.into(),
            payload: payload.to_string(),
            occurred_at: None,
        }
    }

    fn code(r: Result<(), ApiError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(ApiError::Forbidden { code, .. }) | Err(ApiError::Invalid { code, .. }) => code,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kinds_and_models_are_checked() {
        let partner = kinds("[\"odoo.create\"]\nmodels = [\"res.partner\", \"stock.*\"]\n");
        let all = kinds("[\"odoo.create\"]\nmodels = [\"*\", \"res.users\"]\n");
        let none = kinds("");
        let granted = Scope::Kinds(["odoo.create".to_string()].into());
        let create = |model: &str| {
            t(
                "odoo.create",
                json!({"model": model, "values": {"name": "x"}}),
            )
        };
        let cases: Vec<(&Scope, Option<&Kinds>, NewTransaction, &str)> = vec![
            // The default scope: anything but odoo.create.
            (
                &Scope::Default,
                Some(&none),
                t("stock.move", json!({})),
                "ok",
            ),
            (&Scope::Default, None, t("scan", json!({})), "ok"),
            (
                &Scope::Default,
                Some(&partner),
                create("res.partner"),
                "kind_not_allowed",
            ),
            (
                &Scope::Default,
                None,
                create("res.partner"),
                "kind_not_allowed",
            ),
            // Granted: only the models the kind config names.
            (
                &granted,
                Some(&partner),
                t("stock.move", json!({})),
                "kind_not_allowed",
            ),
            (&granted, Some(&partner), create("res.partner"), "ok"),
            (&granted, Some(&partner), create("stock.lot"), "ok"),
            (
                &granted,
                Some(&partner),
                create("res.users"),
                "model_not_allowed",
            ),
            (
                &granted,
                Some(&partner),
                create("ir.cron"),
                "model_not_allowed",
            ),
            (
                &granted,
                Some(&none),
                create("res.partner"),
                "model_not_allowed",
            ),
            (&granted, None, create("res.partner"), "model_not_allowed"),
            // A pattern never covers a security model; an exact name does.
            (&granted, Some(&all), create("product.product"), "ok"),
            (&granted, Some(&all), create("res.users"), "ok"),
            (
                &granted,
                Some(&all),
                create("res.users.apikeys"),
                "model_not_allowed",
            ),
            (&granted, Some(&all), create("ir.cron"), "model_not_allowed"),
            (
                &granted,
                Some(&all),
                create("ir.actions.server"),
                "model_not_allowed",
            ),
            (
                &granted,
                Some(&all),
                create("res.groups"),
                "model_not_allowed",
            ),
            (
                &granted,
                Some(&all),
                create("base.module.update"),
                "model_not_allowed",
            ),
            (
                &granted,
                Some(&all),
                t("odoo.create", json!({"values": {}})),
                "invalid_payload",
            ),
        ];
        for (scope, kinds, tx, want) in cases {
            let what = format!("{scope:?} {} {}", tx.kind, tx.payload);
            assert_eq!(
                code(check("d", scope, kinds, &tx, 0, false)),
                want,
                "{what}"
            );
        }
        let Err(ApiError::Forbidden { field, message, .. }) = check(
            "prometheus",
            &Scope::Default,
            None,
            &create("res.users"),
            3,
            true,
        ) else {
            panic!("refused")
        };
        assert_eq!(field.as_deref(), Some("[3].kind"));
        assert!(
            message.contains("\"prometheus\"") && message.contains("--kinds"),
            "{message}"
        );
        let Err(ApiError::Forbidden { message, .. }) =
            check("gw", &granted, Some(&partner), &create("ir.cron"), 0, false)
        else {
            panic!("refused")
        };
        assert!(message.contains("security model"), "{message}");
    }

    #[test]
    fn an_x2many_to_a_security_model_is_linked_only_when_that_model_is_named() {
        let k = kinds("[\"odoo.create\"]\nmodels = [\"res.partner\", \"*\"]\n");
        let m2o = k.link_allowed("res.partner", "user_id", "many2one", Some("res.users"));
        assert_eq!(m2o, Ok(()), "a many2one only refers");
        let plain = k.link_allowed("res.partner", "name", "char", None);
        assert_eq!(plain, Ok(()));
        let tags = k.link_allowed(
            "res.partner",
            "category_id",
            "many2many",
            Some("res.partner.category"),
        );
        assert_eq!(tags, Ok(()), "not a security model");
        let users = k
            .link_allowed("res.partner", "user_ids", "one2many", Some("res.users"))
            .unwrap_err()
            .to_string();
        assert!(
            users.contains("res.partner.user_ids") && users.contains("res.users"),
            "{users}"
        );
        // "*" never stands for a security model; its exact name does.
        let groups = k.link_allowed("x.y", "groups_id", "many2many", Some("res.groups"));
        assert!(groups.is_err(), "{groups:?}");
        let named = kinds("[\"odoo.create\"]\nmodels = [\"res.partner\", \"res.users\"]\n");
        let linked = named.link_allowed("res.partner", "user_ids", "one2many", Some("res.users"));
        assert_eq!(linked, Ok(()));
    }

    #[test]
    fn the_security_models_are_recognised() {
        use crate::kinds::mapping::security_model;
        for m in [
            "res.users",
            "res.users.apikeys",
            "res.groups",
            "ir.cron",
            "ir.model.access",
            "ir.rule",
            "ir.config_parameter",
            "base.language.install",
            "res.config.settings",
            "res.company",
            "mail.mail",
            "fetchmail.server",
        ] {
            assert!(security_model(m), "{m}");
        }
        for m in [
            "res.partner",
            "irrigation.zone",
            "stock.move",
            "res.usersx",
            "baseline.x",
        ] {
            assert!(!security_model(m), "{m}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn model() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("res.partner".to_string()),
            Just("res.users".to_string()),
            Just("ir.cron".to_string()),
            Just("res.groups".to_string()),
            "(ir|res|base|stock|mrp)\\.[a-z_]{1,8}(\\.[a-z_]{1,6})?",
            ".{0,20}",
        ]
    }

    proptest! {
        /// Whatever a device sends: a kind outside its scope is refused; odoo.create is
        /// accepted only for a model the config lists, and a security model only by its exact
        /// name; a refusal is 403/422 with a message.
        #[test]
        fn scope_checks_hold(
            kind in prop_oneof![Just("odoo.create".to_string()), Just("stock.move".to_string()), "[a-z.]{1,12}"],
            granted in proptest::collection::btree_set(prop_oneof![Just("odoo.create".to_string()), Just("stock.move".to_string())], 0..3),
            default_scope in any::<bool>(),
            listed in proptest::collection::vec(prop_oneof![Just("*".to_string()), Just("res.*".to_string()), Just("res.partner".to_string()), Just("ir.cron".to_string())], 0..3),
            model in model(),
        ) {
            let mut cfg = BTreeMap::new();
            cfg.insert("odoo.create".to_string(), crate::kinds::mapping::KindConfig { models: listed.clone(), ..Default::default() });
            let kinds = Kinds::new(&cfg).unwrap();
            let scope = if default_scope { Scope::Default } else { Scope::Kinds(granted) };
            let tx = NewTransaction {
                key: "k".into(), device: "d".into(), kind: kind.clone(),
                payload: serde_json::json!({"model": model, "values": {"name": "x"}}).to_string(),
                occurred_at: None,
            };
            match check("d", &scope, Some(&kinds), &tx, 0, false) {
                Ok(()) => {
                    prop_assert!(scope.allows(&kind));
                    if kind == "odoo.create" {
                        prop_assert!(!default_scope);
                        let exact = listed.contains(&model);
                        prop_assert!(exact || !crate::kinds::mapping::security_model(&model));
                        prop_assert!(exact || listed.iter().any(|p| p.strip_suffix('*').is_some_and(|pre| model.starts_with(pre))));
                    }
                }
                Err(ApiError::Forbidden { message, .. }) => prop_assert!(!message.is_empty()),
                Err(ApiError::Invalid { message, .. }) => prop_assert!(!message.is_empty()),
                Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
            }
        }
    }
}
