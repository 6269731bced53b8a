//! Who may write what: the [`Principal`] behind an admin request, and the
//! one check every write of a tenant's configuration goes through
//! ([`admit_tenant`]).
//!
//! An operator may write anything `weft.toml` may hold. A tenant (a tenant
//! token) may write its own tenant's configuration, but nothing that reaches
//! beyond it:
//!
//! - **secrets**: a credential or webhook secret the tenant writes may name
//!   only the tenant's own sealed secrets (`{ sealed = "name" }`). Naming an
//!   environment variable of the weft process (`{ env = … }`) or a key that
//!   may fall back to the operator's secrets file (`{ secret = … }`) is
//!   refused, unless the tenant keeps a credential exactly as the operator
//!   wrote it (same origin, same credential) in the same stage;
//! - **limits**: request quotas (`http.rate`) and retry policies
//!   (`retry`) bound what a tenant costs everyone else;
//! - **`active`**: only an operator activates or deactivates a tenant;
//! - **alert targets** (`alert_url`): alerts are the operator's channel, and
//!   a tenant-chosen URL would make the host post wherever the tenant says.
//!
//! What the operator set of these stays as it is when a tenant leaves it
//! out of a write. Private hosts and sandbox limits are not part of a
//! tenant's configuration at all.
//!
//! Each struct of a tenant's configuration is destructured field by field
//! below: a field added to one of them does not compile here until someone
//! decides whether a tenant may set it.
//!
//! This module must not import the service, the runner or the state: it is
//! a pure function of the configurations, unit-tested below.

use crate::caps::http::{CredentialGrant, HttpGrants};
use crate::config::{FlowConfig, SourceStage, Stage, TenantConfig, WebhookConfig};
use crate::secrets::SecretRef;
use std::fmt;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator: every tenant, every operation.
    Operator,
    /// A tenant admin: that tenant's resources only.
    Tenant(String),
}

impl Principal {
    /// Whether this principal may see `tenant`'s resources.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(own) => own == tenant,
        }
    }

    /// The tenant a tenant principal is limited to; `None` for an operator.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::Tenant(t) => Some(t),
        }
    }
}

/// A write refused because the principal may not set a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The field, as a path in the tenant's configuration
    /// (`flows.F.source.http.credentials[0]`).
    pub field: String,
    /// Why, and what the principal may write instead.
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

impl std::error::Error for Refused {}

fn refused(field: impl Into<String>, why: impl Into<String>) -> Refused {
    Refused {
        field: field.into(),
        why: why.into(),
    }
}

/// Checks a write of tenant `id`'s configuration by `who`, given what is
/// stored now (`stored`, `None` for a new tenant) and the body as written
/// (`raw`: which keys it names). Returns the configuration to store: for a
/// tenant principal, the operator-only fields it left out keep their stored
/// values.
pub fn admit_tenant(
    who: &Principal,
    id: &str,
    stored: Option<&TenantConfig>,
    raw: &serde_json::Value,
    new: TenantConfig,
) -> Result<TenantConfig, Refused> {
    let Principal::Tenant(own) = who else {
        return Ok(new);
    };
    if own != id {
        return Err(refused(
            "tenant",
            "a tenant token writes only its own tenant",
        ));
    }
    let Some(stored) = stored else {
        return Err(refused("tenant", "only an operator creates a tenant"));
    };
    let TenantConfig {
        name,
        active,
        alert_url,
        flows,
    } = new;
    // `active` defaults to true: only a body that names it asks to change it.
    if raw.get("active").is_some() && active != stored.active {
        return Err(refused(
            "active",
            "only an operator activates or deactivates a tenant",
        ));
    }
    if alert_url.is_some() && alert_url != stored.alert_url {
        return Err(refused(
            "alert_url",
            "alert targets are set by the operator (alerts go to the operator's channel)",
        ));
    }
    let flows = flows
        .into_iter()
        .map(|(fid, flow)| {
            let at = format!("flows.{fid}");
            let flow = admit_flow(&at, flow, stored.flows.get(&fid))?;
            Ok((fid, flow))
        })
        .collect::<Result<_, Refused>>()?;
    Ok(TenantConfig {
        name,
        active: stored.active,
        alert_url: stored.alert_url.clone(),
        flows,
    })
}

fn admit_flow(at: &str, new: FlowConfig, old: Option<&FlowConfig>) -> Result<FlowConfig, Refused> {
    let FlowConfig {
        source,
        mappers,
        destination,
        schedule,
        retry,
        paused,
    } = new;
    let old_retry = old.map(|f| f.retry.clone()).unwrap_or_default();
    // Serde fills a left-out `retry` with the default: that keeps the
    // operator's; anything else must be what is stored.
    if retry != Default::default() && retry != old_retry {
        return Err(refused(
            format!("{at}.retry"),
            "retry policies are limits the operator sets",
        ));
    }
    let SourceStage {
        connector,
        stream,
        config,
        http,
        webhook,
    } = source;
    let http = admit_grants(
        &format!("{at}.source.http"),
        http,
        old.map(|f| &f.source.http),
    )?;
    let webhook = match webhook {
        None => None,
        Some(WebhookConfig { secrets, register }) => {
            let kept = old
                .and_then(|f| f.source.webhook.as_ref())
                .map(|w| w.secrets.as_slice())
                .unwrap_or_default();
            for (i, s) in secrets.iter().enumerate() {
                if !kept.contains(s) {
                    admit_ref(&format!("{at}.source.webhook.secrets[{i}]"), s)?;
                }
            }
            Some(WebhookConfig { secrets, register })
        }
    };
    let source = SourceStage {
        connector,
        stream,
        config,
        http,
        webhook,
    };
    let mappers = mappers
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            admit_stage(
                &format!("{at}.mappers[{i}]"),
                m,
                old.and_then(|f| f.mappers.get(i)),
            )
        })
        .collect::<Result<_, _>>()?;
    let destination = admit_stage(
        &format!("{at}.destination"),
        destination,
        old.map(|f| &f.destination),
    )?;
    Ok(FlowConfig {
        source,
        mappers,
        destination,
        schedule,
        retry: old_retry,
        paused,
    })
}

fn admit_stage(at: &str, new: Stage, old: Option<&Stage>) -> Result<Stage, Refused> {
    let Stage {
        connector,
        config,
        http,
    } = new;
    let http = admit_grants(&format!("{at}.http"), http, old.map(|s| &s.http))?;
    Ok(Stage {
        connector,
        config,
        http,
    })
}

fn admit_grants(
    at: &str,
    new: HttpGrants,
    old: Option<&HttpGrants>,
) -> Result<HttpGrants, Refused> {
    let HttpGrants {
        allow,
        credentials,
        rate,
    } = new;
    let old_rate = old.and_then(|o| o.rate);
    if rate.is_some() && rate != old_rate {
        return Err(refused(
            format!("{at}.rate"),
            "request quotas are limits the operator sets",
        ));
    }
    let kept: &[CredentialGrant] = old.map(|o| o.credentials.as_slice()).unwrap_or_default();
    for (i, c) in credentials.iter().enumerate() {
        if kept.contains(c) {
            continue;
        }
        for r in c.auth.secret_refs() {
            admit_ref(&format!("{at}.credentials[{i}]"), r)?;
        }
    }
    Ok(HttpGrants {
        allow,
        credentials,
        rate: old_rate,
    })
}

/// A secret reference a tenant writes: its own sealed secrets only.
fn admit_ref(at: &str, r: &SecretRef) -> Result<(), Refused> {
    let name = match r {
        SecretRef::Sealed(_) => return Ok(()),
        SecretRef::Env(var) => {
            return Err(refused(
                at,
                format!(
                    "{{ env = {var:?} }} names a variable of the weft process, which only an \
                     operator may; store the value with `PUT /v1/tenants/{{tenant}}/secrets/NAME` \
                     and write {{ \"sealed\": \"NAME\" }}"
                ),
            ));
        }
        SecretRef::Secret(name) => name,
    };
    Err(refused(
        at,
        format!(
            "{{ secret = {name:?} }} may fall back to the operator's secrets file, which only an \
             operator may name; a tenant names its own secret as {{ \"sealed\": {name:?} }}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A stored tenant as an operator wrote it: an env credential, a file
    /// secret for webhooks, a rate, a retry policy, inactive, an alert URL.
    fn stored() -> TenantConfig {
        serde_json::from_value(json!({
            "active": false,
            "alert_url": "https://alerts.example/hook",
            "flows": { "f": {
                "source": {
                    "connector": "acme-crm@^1", "stream": "appointments",
                    "http": {
                        "allow": ["https://acme.example"],
                        "credentials": [{ "origin": "https://acme.example",
                            "auth": { "type": "bearer", "token": { "env": "ACME_TOKEN" } } }],
                        "rate": { "per_second": 5.0, "burst": 5 }
                    },
                    "webhook": { "secrets": [{ "secret": "hook" }] }
                },
                "destination": { "connector": "caldav@^1" },
                "retry": { "max_attempts": 3, "base_delay_ms": 100, "max_delay_ms": 1000 }
            } }
        }))
        .unwrap()
    }

    fn write(who: &Principal, body: Value) -> Result<TenantConfig, Refused> {
        let s = stored();
        let new: TenantConfig = serde_json::from_value(body.clone()).unwrap();
        admit_tenant(who, "t1", Some(&s), &body, new)
    }

    fn t1() -> Principal {
        Principal::Tenant("t1".into())
    }

    fn body() -> Value {
        serde_json::to_value(stored()).unwrap()
    }

    #[test]
    fn a_tenant_keeps_what_the_operator_wrote() {
        let out = write(&t1(), body()).unwrap();
        assert_eq!(out, stored());
    }

    #[test]
    fn a_tenant_may_not_name_the_hosts_environment_or_secrets_file() {
        for auth in [
            json!({ "type": "bearer", "token": { "env": "WEFT_ADMIN_TOKEN" } }),
            json!({ "type": "bearer", "token": { "secret": "operator_key" } }),
            json!({ "type": "basic", "username": "u", "password": { "env": "X" } }),
            json!({ "type": "api_key", "header": "X-K", "value": { "secret": "k" } }),
            json!({ "type": "oauth2_client_credentials", "token_url": "https://evil.example/t",
                    "client_id": "c", "client_secret": { "env": "WEFT_SECRET_KEY" } }),
        ] {
            let mut b = body();
            b["flows"]["f"]["destination"]["http"] = json!({
                "allow": ["https://evil.example"],
                "credentials": [{ "origin": "https://evil.example", "auth": auth }]
            });
            let e = write(&t1(), b).unwrap_err();
            assert_eq!(e.field, "flows.f.destination.http.credentials[0]", "{e}");
            assert!(e.why.contains("sealed"), "{e}");
        }
        // The operator's env credential moved to another origin is new.
        let mut b = body();
        b["flows"]["f"]["source"]["http"]["credentials"][0]["origin"] =
            json!("https://evil.example");
        let e = write(&t1(), b).unwrap_err();
        assert_eq!(e.field, "flows.f.source.http.credentials[0]", "{e}");
        // A webhook secret may not fall back to the file either.
        let mut b = body();
        b["flows"]["f"]["source"]["webhook"]["secrets"] = json!([{ "secret": "other" }]);
        let e = write(&t1(), b).unwrap_err();
        assert_eq!(e.field, "flows.f.source.webhook.secrets[0]", "{e}");
        // The same writes by the operator go through.
        let mut b = body();
        b["flows"]["f"]["source"]["webhook"]["secrets"] = json!([{ "env": "HOOK" }]);
        assert!(write(&Principal::Operator, b).is_ok());
    }

    #[test]
    fn a_tenant_may_name_its_own_sealed_secrets() {
        let mut b = body();
        b["flows"]["f"]["destination"]["http"] = json!({
            "allow": ["https://mine.example"],
            "credentials": [{ "origin": "https://mine.example",
                "auth": { "type": "bearer", "token": { "sealed": "mine" } } }]
        });
        b["flows"]["f"]["source"]["webhook"]["secrets"] = json!([{ "sealed": "hook2" }]);
        let out = write(&t1(), b).unwrap();
        assert_eq!(
            out.flows["f"].destination.http.credentials[0]
                .auth
                .secret_refs(),
            vec![&SecretRef::Sealed("mine".into())]
        );
    }

    #[test]
    fn active_alerts_rates_and_retries_are_the_operators() {
        let cases = [
            ("/active", json!(true), "active"),
            ("/alert_url", json!("http://169.254.169.254/"), "alert_url"),
            (
                "/flows/f/source/http/rate",
                json!({ "per_second": 1000.0, "burst": 1000 }),
                "flows.f.source.http.rate",
            ),
            (
                "/flows/f/retry",
                json!({ "max_attempts": 1000000, "base_delay_ms": 1, "max_delay_ms": 1 }),
                "flows.f.retry",
            ),
        ];
        for (pointer, value, field) in cases {
            let mut b = body();
            *b.pointer_mut(pointer).unwrap() = value;
            assert_eq!(write(&t1(), b).unwrap_err().field, field);
        }
        // Left out, they keep the operator's values (an inactive tenant
        // stays inactive: `active` defaults to true).
        let mut b = body();
        let o = b.as_object_mut().unwrap();
        o.remove("active");
        o.remove("alert_url");
        let f = b["flows"]["f"].as_object_mut().unwrap();
        f.remove("retry");
        b["flows"]["f"]["source"]["http"]
            .as_object_mut()
            .unwrap()
            .remove("rate");
        assert_eq!(write(&t1(), b).unwrap(), stored());
    }

    #[test]
    fn a_tenant_creates_no_tenant_and_writes_no_other() {
        let new: TenantConfig = serde_json::from_value(body()).unwrap();
        let e = admit_tenant(&t1(), "t1", None, &body(), new.clone()).unwrap_err();
        assert!(e.why.contains("operator"), "{e}");
        let e = admit_tenant(&t1(), "t2", Some(&stored()), &body(), new).unwrap_err();
        assert!(e.why.contains("own"), "{e}");
    }
}
