//! `GET /openapi.json`: an OpenAPI 3.1 document of the public API, matching
//! the vendor's reference. The server URL is the sandbox's own.

use super::Shared;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

fn ts() -> Value {
    json!({ "type": "string", "format": "date-time", "description": "RFC 3339 with an offset" })
}

fn nullable(t: &str) -> Value {
    json!({ "type": [t, "null"] })
}

fn list_params(extra: Vec<Value>) -> Value {
    let mut params = vec![
        json!({ "name": "updated_since", "in": "query", "schema": ts(), "description": "Inclusive. Encode `+` as %2B." }),
        json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 50 } }),
        json!({ "name": "cursor", "in": "query", "schema": { "type": "string" }, "description": "Opaque, valid 10 minutes; other filters are ignored when present." }),
    ];
    params.extend(extra);
    Value::Array(params)
}

fn page_of(schema: &str) -> Value {
    json!({
        "description": "A page, ordered by (updated_at instant, id) ascending",
        "content": { "application/json": { "schema": {
            "type": "object", "required": ["data", "next_cursor"],
            "properties": {
                "data": { "type": "array", "items": { "$ref": format!("#/components/schemas/{schema}") } },
                "next_cursor": nullable("string")
            }
        } } }
    })
}

fn errors() -> Value {
    let e = json!({ "$ref": "#/components/responses/Error" });
    json!({ "400": e, "401": e, "403": e, "404": e, "429": { "$ref": "#/components/responses/RateLimited" }, "500": e, "502": e, "503": e })
}

fn with_errors(ok_code: &str, ok: Value) -> Value {
    let mut r = errors();
    r[ok_code] = ok;
    r
}

/// The document.
pub fn document(server: &str) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Acme CRM API", "version": "1", "description": "Acme's public API (sandbox)." },
        "servers": [{ "url": server }],
        "security": [{ "oauth2": [] }, { "apiKey": [] }],
        "paths": {
            "/oauth/token": { "post": {
                "summary": "OAuth 2.0 client credentials", "security": [],
                "requestBody": { "required": true, "content": { "application/x-www-form-urlencoded": { "schema": {
                    "type": "object", "required": ["grant_type", "client_id", "client_secret"],
                    "properties": { "grant_type": { "const": "client_credentials" }, "client_id": { "type": "string" }, "client_secret": { "type": "string" } }
                } } } },
                "responses": with_errors("200", json!({ "description": "A token", "content": { "application/json": { "schema": {
                    "type": "object", "required": ["access_token", "token_type", "expires_in"],
                    "properties": { "access_token": { "type": "string" }, "token_type": { "const": "Bearer" }, "expires_in": { "type": "integer" } }
                } } } }))
            } },
            "/users": { "get": { "summary": "List users", "responses": with_errors("200", json!({
                "description": "All users", "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "data": { "type": "array", "items": { "$ref": "#/components/schemas/User" } } } } } }
            })) } },
            "/contacts": { "get": {
                "summary": "List contacts, or look up by IDs",
                "parameters": list_params(vec![json!({ "name": "ids", "in": "query", "schema": { "type": "string" }, "description": "Comma-separated, at most 50; unknown IDs are left out" })]),
                "responses": with_errors("200", page_of("Contact"))
            } },
            "/contacts/{id}": { "get": {
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with_errors("200", json!({ "description": "A contact", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Contact" } } } }))
            } },
            "/appointments": { "get": { "summary": "List appointments", "parameters": list_params(vec![]), "responses": with_errors("200", page_of("Appointment")) } },
            "/appointments/{id}": { "get": {
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with_errors("200", json!({ "description": "An appointment", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Appointment" } } } }))
            } },
            "/activities": { "get": {
                "summary": "List activities",
                "parameters": list_params(vec![json!({ "name": "types", "in": "query", "schema": { "type": "string" }, "description": "Comma-separated: email, call, meeting, note" })]),
                "responses": with_errors("200", page_of("Activity"))
            } },
            "/webhooks": {
                "post": {
                    "summary": "Register a webhook",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["url", "events"],
                        "properties": { "url": { "type": "string", "format": "uri" }, "events": { "type": "array", "items": { "enum": super::webhooks::EVENTS } } }
                    } } } },
                    "responses": with_errors("201", json!({ "description": "Registered", "content": { "application/json": { "schema": {
                        "type": "object", "properties": { "id": { "type": "string" }, "secret": { "type": "string", "pattern": "^whsec_" } } } } } }))
                },
                "get": { "summary": "List webhooks", "responses": with_errors("200", json!({ "description": "Webhooks" })) }
            },
            "/webhooks/{id}": { "delete": {
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with_errors("204", json!({ "description": "Removed" }))
            } },
            "/webhooks/{id}/rotate": { "post": {
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with_errors("200", json!({ "description": "A new secret; both sign for 24 h", "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "secret": { "type": "string" } } } } } }))
            } }
        },
        "components": {
            "securitySchemes": {
                "oauth2": { "type": "oauth2", "flows": { "clientCredentials": { "tokenUrl": format!("{server}/oauth/token"), "scopes": {} } } },
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-Acme-Api-Key" }
            },
            "responses": {
                "Error": { "description": "An error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "RateLimited": {
                    "description": "Over the rate limit",
                    "headers": { "Retry-After": { "schema": { "type": "integer", "minimum": 1 } } },
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
                }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } },
                "User": { "type": "object", "required": ["id", "name", "email", "timezone"], "properties": {
                    "id": { "type": "string", "pattern": "^usr_" }, "name": { "type": "string" }, "email": { "type": "string" }, "timezone": { "type": "string" } } },
                "Contact": { "type": "object", "required": ["id", "first_name", "last_name", "email", "phone", "owner_id", "created_at", "updated_at"], "properties": {
                    "id": { "type": "string", "pattern": "^con_" }, "first_name": { "type": "string" }, "last_name": { "type": "string" },
                    "email": nullable("string"), "phone": nullable("string"), "owner_id": { "type": "string" },
                    "created_at": ts(), "updated_at": ts(), "deleted_at": { "type": ["string", "null"], "format": "date-time" } } },
                "Appointment": { "type": "object", "required": ["id", "owner_id", "contact_id", "title", "starts_at", "ends_at", "timezone", "location", "notes", "status", "created_at", "updated_at", "deleted_at"], "properties": {
                    "id": { "type": "string", "pattern": "^apt_" }, "owner_id": { "type": "string" }, "contact_id": { "type": "string" },
                    "title": nullable("string"), "starts_at": { "type": ["string", "null"], "format": "date-time" },
                    "ends_at": { "type": ["string", "null"], "format": "date-time" }, "timezone": { "type": "string" },
                    "location": nullable("string"), "notes": nullable("string"), "status": { "enum": ["scheduled", "completed", "cancelled"] },
                    "created_at": ts(), "updated_at": ts(), "deleted_at": { "type": ["string", "null"], "format": "date-time" } } },
                "Activity": { "type": "object", "required": ["id", "type", "direction", "owner_id", "contact_id", "occurred_at", "duration_seconds", "subject", "created_at", "updated_at", "deleted_at"], "properties": {
                    "id": { "type": "string", "pattern": "^act_" }, "type": { "enum": ["email", "call", "meeting", "note"] },
                    "direction": { "enum": ["inbound", "outbound"] }, "owner_id": { "type": "string" }, "contact_id": { "type": "string" },
                    "occurred_at": ts(), "duration_seconds": nullable("integer"), "subject": nullable("string"),
                    "created_at": ts(), "updated_at": ts(), "deleted_at": { "type": ["string", "null"], "format": "date-time" } } }
            }
        }
    })
}

pub(crate) async fn serve(State(_): State<Shared>, headers: HeaderMap) -> Json<Value> {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    Json(document(&format!("http://{host}/api/v1")))
}
