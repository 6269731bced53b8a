//! Credentials the host adds to outbound requests, per tenant and origin.
//! Connectors never see them: the `authorization` header (and any API-key
//! header configured here) is forbidden to guests and set by the host.
//!
//! OAuth 2.0 client-credentials tokens are fetched by the host, cached until
//! shortly before they expire, and refetched once when the API answers `401`.

use super::client::{Resolver, send_once};
use super::policy::{Origin, OriginPattern, Policy};
use crate::secrets::{Secret, SecretRef, SecretStore};
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to authenticate to one origin, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Where the token comes from.
        token: SecretRef,
    },
    /// HTTP Basic.
    Basic {
        /// The user name (not secret).
        username: String,
        /// Where the password comes from.
        password: SecretRef,
    },
    /// A header carrying an API key, for example `X-Acme-Api-Key`.
    ApiKey {
        /// The header name.
        header: String,
        /// Where the key comes from.
        value: SecretRef,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4).
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        /// The token endpoint, absolute URL.
        token_url: String,
        /// The client ID (not secret).
        client_id: String,
        /// Where the client secret comes from.
        client_secret: SecretRef,
        /// The scope to ask for, if any.
        #[serde(default)]
        scope: Option<String>,
    },
}

impl Credential {
    /// The secrets this credential names.
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        match self {
            Credential::Bearer { token } => vec![token],
            Credential::Basic { password, .. } => vec![password],
            Credential::ApiKey { value, .. } => vec![value],
            Credential::OAuth2ClientCredentials { client_secret, .. } => vec![client_secret],
        }
    }
}

/// A credential bound to the origins it is sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialGrant {
    /// The origins that receive this credential.
    #[schema(value_type = String, example = "https://northwind.acme-crm.example")]
    pub origin: OriginPattern,
    /// The credential.
    pub auth: Credential,
}

/// A credential with its secrets resolved.
#[derive(Debug, Clone)]
pub enum ResolvedAuth {
    /// A fixed header value (bearer, basic, API key).
    Header(http::HeaderName, HeaderValue),
    /// OAuth client credentials.
    OAuth {
        /// Token endpoint.
        token_url: String,
        /// Client ID.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// Scope.
        scope: Option<String>,
    },
}

impl ResolvedAuth {
    /// Resolves the secrets of `c`.
    pub fn resolve(c: &Credential, secrets: &SecretStore) -> anyhow::Result<Self> {
        let sensitive = |s: String| -> anyhow::Result<HeaderValue> {
            let mut v = HeaderValue::from_str(&s).map_err(|_| {
                anyhow::anyhow!("credential contains characters not allowed in a header")
            })?;
            v.set_sensitive(true);
            Ok(v)
        };
        Ok(match c {
            Credential::Bearer { token } => ResolvedAuth::Header(
                http::header::AUTHORIZATION,
                sensitive(format!("Bearer {}", secrets.resolve(token)?.expose()))?,
            ),
            Credential::Basic { username, password } => {
                let raw = format!("{username}:{}", secrets.resolve(password)?.expose());
                ResolvedAuth::Header(
                    http::header::AUTHORIZATION,
                    sensitive(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    ))?,
                )
            }
            Credential::ApiKey { header, value } => ResolvedAuth::Header(
                http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| anyhow::anyhow!("{header:?} is not a valid header name"))?,
                sensitive(secrets.resolve(value)?.expose().to_owned())?,
            ),
            Credential::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                let uri: http::Uri = token_url
                    .parse()
                    .map_err(|e| anyhow::anyhow!("token_url {token_url:?}: {e}"))?;
                Origin::from_uri(&uri)
                    .map_err(|e| anyhow::anyhow!("token_url {token_url:?}: {e}"))?;
                ResolvedAuth::OAuth {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    client_secret: secrets.resolve(client_secret)?,
                    scope: scope.clone(),
                }
            }
        })
    }

    /// The header this credential sets, so guests can be forbidden to set it.
    pub fn header_name(&self) -> http::HeaderName {
        match self {
            ResolvedAuth::Header(name, _) => name.clone(),
            ResolvedAuth::OAuth { .. } => http::header::AUTHORIZATION,
        }
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: HeaderValue,
    refresh_at: Instant,
}

/// (tenant, token URL, client ID, SHA-256 of the client secret and scope).
type TokenKey = (String, String, String, String);

/// OAuth tokens cached per (tenant, token URL, client ID, secret and
/// scope): a token got with one secret is never handed out for another (a
/// corrected secret, or a connection test with a wrong one, asks the
/// endpoint again).
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    inner: Arc<tokio::sync::Mutex<HashMap<TokenKey, CachedToken>>>,
}

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
#[error("OAuth token from {token_url}: {reason}")]
pub struct TokenError {
    /// The endpoint.
    pub token_url: String,
    /// Why.
    pub reason: String,
    /// The endpoint refused the client itself (`invalid_client`, or any
    /// `4xx` other than `408`/`429`): retrying cannot help, a person must
    /// fix the credentials.
    pub client_refused: bool,
}

/// SHA-256 (hex) of a client secret and scope: part of a cached token's
/// key without keeping the secret itself.
fn secret_digest(secret: &Secret, scope: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(secret.expose().as_bytes());
    h.update([0]);
    h.update(scope.unwrap_or("").as_bytes());
    hex::encode(h.finalize())
}

impl TokenCache {
    /// A valid `Authorization` value for the credential: the cached token,
    /// or a new one when there is none, it is about to expire, or `stale` is
    /// the value the API just refused.
    pub async fn token(
        &self,
        tenant: &str,
        auth: &ResolvedAuth,
        stale: Option<&HeaderValue>,
        resolver: &dyn Resolver,
        policy: &Policy,
        timeout: Duration,
    ) -> Result<HeaderValue, TokenError> {
        let ResolvedAuth::OAuth {
            token_url,
            client_id,
            client_secret,
            scope,
        } = auth
        else {
            unreachable!("token() is only called for OAuth credentials")
        };
        let key = (
            tenant.to_owned(),
            token_url.clone(),
            client_id.clone(),
            secret_digest(client_secret, scope.as_deref()),
        );
        // Held across the fetch so that concurrent callers wait for one token.
        let mut cache = self.inner.lock().await;
        if let Some(t) = cache.get(&key)
            && Instant::now() < t.refresh_at
            && stale != Some(&t.value)
        {
            return Ok(t.value.clone());
        }
        let err = |reason: String| TokenError {
            token_url: token_url.clone(),
            reason,
            client_refused: false,
        };
        let uri: http::Uri = token_url.parse().map_err(|e| err(format!("{e}")))?;
        let origin = Origin::from_uri(&uri).map_err(err)?;
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", client_secret.expose());
            if let Some(s) = scope {
                form.append_pair("scope", s);
            }
            form.finish()
        };
        let req = http::Request::post(uri)
            .header(http::header::HOST, uri_authority(token_url))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| err(e.to_string()))?;
        let started = Instant::now();
        let resp = send_once(resolver, policy, &origin, req, timeout, 1 << 20, None)
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            let body: String = String::from_utf8_lossy(resp.body())
                .chars()
                .take(300)
                .collect();
            let status = resp.status();
            return Err(TokenError {
                client_refused: status.is_client_error()
                    && status != http::StatusCode::TOO_MANY_REQUESTS
                    && status != http::StatusCode::REQUEST_TIMEOUT,
                ..err(format!("HTTP {status}: {body}"))
            });
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            token_type: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let t: TokenResponse = serde_json::from_slice(resp.body())
            .map_err(|e| err(format!("malformed token response: {e}")))?;
        if let Some(tt) = &t.token_type
            && !tt.eq_ignore_ascii_case("bearer")
        {
            return Err(err(format!("unsupported token_type {tt:?}")));
        }
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3600));
        // Refresh a little early: a tenth of the lifetime, at most 60 s.
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        let mut value = HeaderValue::from_str(&format!("Bearer {}", t.access_token))
            .map_err(|_| err("access_token is not a valid header value".into()))?;
        value.set_sensitive(true);
        cache.insert(
            key,
            CachedToken {
                value: value.clone(),
                refresh_at: started + lifetime - margin,
            },
        );
        Ok(value)
    }
}

fn uri_authority(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}
