//! Integrations on offer (`[integrations.ID]` in `weft.toml`): what a
//! tenant fills in to turn one on, and the flows that makes.
//!
//! The flows are the operator's. The tenant brings its vendor account (the
//! base URL and one credential, sealed as the tenant's secrets) and the
//! options the flows' stages leave open: each connector's JSON Schema less
//! the properties the integration fixes. The form ([`IntegrationForm`]) and
//! the build ([`Host::integration_flows`]) read the same template through
//! [`Host::open_options`], so what the console asks is what is applied.
//!
//! This module decides nothing about who may apply an integration: the
//! service's handlers do, with [`super::access`].

use crate::Host;
use crate::caps::http::policy::OriginPattern;
use crate::caps::http::{Credential, CredentialGrant};
use crate::config::{FlowConfig, IntegrationConfig, Stage, VendorAuth};
use crate::runtime::connector::Connector;
use crate::secrets::SecretRef;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// An integration as a form: what a tenant must enter to turn it on.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntegrationForm {
    /// Its ID.
    pub id: String,
    /// Its name for people.
    pub title: String,
    /// What it does.
    pub description: String,
    /// The vendor's name.
    pub vendor: String,
    /// The kind of credential asked for.
    pub auth: VendorAuth,
    /// The credential's fields, in order.
    pub credentials: Vec<CredentialField>,
    /// Per connector (by name), the JSON Schema of the options the tenant
    /// sets: the connector's own, less what the integration fixes.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub options: BTreeMap<String, Value>,
    /// The flows it makes.
    pub flows: Vec<String>,
}

/// One field of a vendor credential.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialField {
    /// Its key in [`Answers::credentials`].
    pub name: String,
    /// Its label.
    pub label: String,
    /// Whether it is secret (sealed, never shown again).
    pub secret: bool,
}

/// What a tenant entered to turn an integration on.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    /// The base URL of the tenant's account at the vendor.
    pub base_url: String,
    /// The credential's fields by name (see [`IntegrationForm::credentials`]).
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// Options per connector name.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Object>)]
    pub options: BTreeMap<String, Map<String, Value>>,
}

/// What is wrong, per field: `base_url`, `credentials.client_secret`,
/// `options.acme-calendar.keep_cancelled`.
pub type FieldErrors = BTreeMap<String, String>;

/// Why an integration could not be built.
#[derive(Debug)]
pub enum IntegrationError {
    /// No integration of that ID.
    NoSuch(String),
    /// The answers do not fit, per field.
    Fields(FieldErrors),
    /// Something else (the registry, a broken template).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for IntegrationError {
    fn from(e: anyhow::Error) -> Self {
        IntegrationError::Other(e)
    }
}

/// A connector of an integration's stages and the config keys they fix.
struct Open {
    connector: Connector,
    fixed: BTreeSet<String>,
}

/// The flows an integration makes and the secrets they name.
pub struct Built {
    /// The flows, ready for the tenant's configuration.
    pub flows: BTreeMap<String, FlowConfig>,
    /// Sealed secrets to write first: (name, value).
    pub secrets: Vec<(String, String)>,
}

/// The fields of a credential of kind `auth`: (name, label, secret).
fn credential_fields(auth: VendorAuth) -> Vec<CredentialField> {
    let fields: &[(&str, &str, bool)] = match auth {
        VendorAuth::OAuth2ClientCredentials => &[
            ("client_id", "Client ID", false),
            ("client_secret", "Client secret", true),
        ],
        VendorAuth::ApiKey => &[("api_key", "API key", true)],
        VendorAuth::Bearer => &[("token", "Access token", true)],
        VendorAuth::Basic => &[
            ("username", "User name", false),
            ("password", "Password", true),
        ],
    };
    fields
        .iter()
        .map(|(name, label, secret)| CredentialField {
            name: (*name).to_owned(),
            label: (*label).to_owned(),
            secret: *secret,
        })
        .collect()
}

/// Every stage of `flow`: (stage, whether it is the source).
fn stages(flow: &FlowConfig) -> Vec<(Stage, bool)> {
    let mut all = vec![(flow.source.stage(), true)];
    all.extend(flow.mappers.iter().map(|m| (m.clone(), false)));
    all.push((flow.destination.clone(), false));
    all
}

/// `{tenant}` in every string of `v` becomes `tenant`.
fn put_tenant_in(v: &mut Value, tenant: &str) {
    match v {
        Value::String(s) if s.contains("{tenant}") => *s = s.replace("{tenant}", tenant),
        Value::Array(items) => items.iter_mut().for_each(|i| put_tenant_in(i, tenant)),
        Value::Object(map) => map.values_mut().for_each(|i| put_tenant_in(i, tenant)),
        _ => {}
    }
}

fn merge(config: &mut Value, options: Option<&Map<String, Value>>) {
    if let (Value::Object(c), Some(o)) = (config, options) {
        for (k, v) in o {
            c.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

impl Host {
    /// The integrations on offer, each as its form.
    pub async fn integration_forms(&self) -> anyhow::Result<Vec<IntegrationForm>> {
        let mut forms = Vec::new();
        for (id, i) in &self.config.integrations {
            let mut options = BTreeMap::new();
            for (name, open) in self.open_options(i).await? {
                let mut schema = open.connector.info().config_schema.clone();
                let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut)
                else {
                    continue;
                };
                props.retain(|k, _| !open.fixed.contains(k));
                if props.is_empty() {
                    continue;
                }
                if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
                    req.retain(|r| r.as_str().is_some_and(|r| !open.fixed.contains(r)));
                }
                options.insert(name, schema);
            }
            forms.push(IntegrationForm {
                id: id.clone(),
                title: i.title.clone(),
                description: i.description.clone(),
                vendor: i.vendor.name.clone(),
                auth: i.vendor.auth,
                credentials: credential_fields(i.vendor.auth),
                options,
                flows: i.flows.keys().cloned().collect(),
            });
        }
        Ok(forms)
    }

    /// Each connector (by name) of `i`'s stages, loaded, with the config
    /// keys its stages fix (a source's `base_url` among them: the tenant
    /// enters it as the account's address).
    async fn open_options(&self, i: &IntegrationConfig) -> anyhow::Result<BTreeMap<String, Open>> {
        let mut open: BTreeMap<String, Open> = BTreeMap::new();
        for flow in i.flows.values() {
            for (stage, is_source) in stages(flow) {
                let name = stage.connector.name.clone();
                let mut fixed: BTreeSet<String> = match &stage.config {
                    Value::Object(m) => m.keys().cloned().collect(),
                    _ => BTreeSet::new(),
                };
                if is_source {
                    fixed.insert("base_url".to_owned());
                }
                match open.get_mut(&name) {
                    Some(o) => o.fixed.extend(fixed),
                    None => {
                        let entry = self.registry.resolve(&stage.connector)?;
                        let connector = self.registry.load(&self.runtime, &entry).await?;
                        open.insert(name, Open { connector, fixed });
                    }
                }
            }
        }
        Ok(open)
    }

    /// The flows integration `id` makes for `tenant` from `answers`, with
    /// the sealed secrets they name (`{secret_prefix}client_secret`, …),
    /// or what is wrong with each field.
    pub async fn integration_flows(
        &self,
        tenant: &str,
        id: &str,
        answers: &Answers,
        secret_prefix: &str,
    ) -> Result<Built, IntegrationError> {
        let i = self
            .config
            .integrations
            .get(id)
            .ok_or_else(|| IntegrationError::NoSuch(id.to_owned()))?;
        let mut errors = FieldErrors::new();

        let base = answers.base_url.trim().trim_end_matches('/').to_owned();
        let origin = match url::Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                OriginPattern::parse(&format!(
                    "{}://{}{port}",
                    u.scheme(),
                    u.host_str().unwrap_or("")
                ))
                .map_err(|e| errors.insert("base_url".into(), e))
                .ok()
            }
            _ => {
                errors.insert(
                    "base_url".into(),
                    "an http(s) address, like https://yourcompany.vendor.example".into(),
                );
                None
            }
        };

        let fields = credential_fields(i.vendor.auth);
        let mut secrets = Vec::new();
        let mut plain = BTreeMap::new();
        for f in &fields {
            match answers.credentials.get(&f.name).map(|v| v.trim()) {
                Some(v) if !v.is_empty() => {
                    if f.secret {
                        secrets.push((format!("{secret_prefix}{}", f.name), v.to_owned()));
                    } else {
                        plain.insert(f.name.as_str(), v.to_owned());
                    }
                }
                _ => {
                    errors.insert(format!("credentials.{}", f.name), "required".into());
                }
            }
        }
        for name in answers.credentials.keys() {
            if !fields.iter().any(|f| &f.name == name) {
                errors.insert(
                    format!("credentials.{name}"),
                    format!("{} takes no credential {name:?}", i.vendor.name),
                );
            }
        }

        let open = self.open_options(i).await?;
        for (name, opts) in &answers.options {
            let Some(o) = open.get(name) else {
                errors.insert(
                    format!("options.{name}"),
                    format!("this integration has no connector {name:?}"),
                );
                continue;
            };
            for k in opts.keys().filter(|k| o.fixed.contains(*k)) {
                errors.insert(
                    format!("options.{name}.{k}"),
                    "set by the integration".into(),
                );
            }
        }

        let sealed = |field: &str| SecretRef::Sealed(format!("{secret_prefix}{field}"));
        let credential = match i.vendor.auth {
            VendorAuth::OAuth2ClientCredentials => Credential::OAuth2ClientCredentials {
                token_url: format!("{base}{}", i.vendor.token_path.as_deref().unwrap_or("")),
                client_id: plain.get("client_id").cloned().unwrap_or_default(),
                client_secret: sealed("client_secret"),
                scope: None,
            },
            VendorAuth::ApiKey => Credential::ApiKey {
                header: i.vendor.header.clone().unwrap_or_default(),
                value: sealed("api_key"),
            },
            VendorAuth::Bearer => Credential::Bearer {
                token: sealed("token"),
            },
            VendorAuth::Basic => Credential::Basic {
                username: plain.get("username").cloned().unwrap_or_default(),
                password: sealed("password"),
            },
        };

        let mut flows = BTreeMap::new();
        for (name, template) in &i.flows {
            let mut v = serde_json::to_value(template).map_err(anyhow::Error::from)?;
            put_tenant_in(&mut v, tenant);
            let mut flow: FlowConfig = serde_json::from_value(v).map_err(anyhow::Error::from)?;
            merge(
                &mut flow.source.config,
                answers.options.get(&flow.source.connector.name),
            );
            if let Value::Object(c) = &mut flow.source.config {
                c.insert("base_url".into(), Value::String(base.clone()));
            }
            if let Some(origin) = &origin {
                flow.source.http.allow.push(origin.clone());
                flow.source.http.credentials.insert(
                    0,
                    CredentialGrant {
                        origin: origin.clone(),
                        auth: credential.clone(),
                    },
                );
            }
            for m in &mut flow.mappers {
                merge(&mut m.config, answers.options.get(&m.connector.name));
            }
            merge(
                &mut flow.destination.config,
                answers.options.get(&flow.destination.connector.name),
            );
            // Each stage's config against its connector's schema, errors
            // named by the option they are about.
            for (stage, _) in stages(&flow) {
                let Some(o) = open.get(&stage.connector.name) else {
                    continue;
                };
                let found = o
                    .connector
                    .config_errors(&stage.config)
                    .map_err(anyhow::Error::msg)?;
                for (path, e) in found {
                    let key = path.trim_start_matches('/').split('/').next().unwrap_or("");
                    let field = match key {
                        "" => format!("options.{}", stage.connector.name),
                        "base_url" if stage == flow.source.stage() => "base_url".to_owned(),
                        k => format!("options.{}.{k}", stage.connector.name),
                    };
                    errors.entry(field).or_insert(e);
                }
            }
            flows.insert(name.clone(), flow);
        }
        if errors.is_empty() {
            Ok(Built { flows, secrets })
        } else {
            Err(IntegrationError::Fields(errors))
        }
    }

    /// Calls `flow`'s source once as `tenant`, committing nothing: the
    /// number of records on the stream's first page, or the source's error
    /// in words (the vendor's refusal, a wrong address, a pool with no
    /// free instance slot).
    pub async fn probe_source(
        &self,
        tenant: &str,
        flow_name: &str,
        flow: &FlowConfig,
    ) -> anyhow::Result<Result<usize, String>> {
        let at = format!("tenants.{tenant}.flows.{flow_name}");
        let (stage, c) = self.source_connector(flow, &at).await?;
        // A free slot now or none: a test never waits on (or holds up) the
        // instance pool that runs share, however many are asked at once.
        let Some(mut slots) = self.runtime.try_reserve_slots(1) else {
            return Ok(Err(
                "weft is busy running flows: try the connection again in a moment".to_owned(),
            ));
        };
        let mut source = self
            .instantiate(&c, tenant, flow_name, "probe", &stage, &mut slots)
            .await?;
        Ok(match source.fetch(&flow.source.stream, None).await {
            Ok(page) => Ok(page.records.len()),
            Err(e) => Err(e.to_string()),
        })
    }
}
