//! The Iceberg REST catalog, spoken by floe itself.
//!
//! iceberg-rust 0.10.1 ships a REST client, but it cannot refresh tokens, has no TLS unless the
//! application picks a reqwest feature, and commits only its sealed `TableCommit`. floe needs few
//! calls, so it sends them itself, with the protocol's request and response types from
//! `iceberg-catalog-rest`:
//!
//! ```text
//!   open:   POST {oauth2-server-uri | uri/v1/oauth/tokens}   (credential -> bearer token)
//!           GET  {uri}/v1/config?warehouse=..                 (defaults < user < overrides,
//!                                                              prefix)
//!   load:   GET  {uri}/v1/{prefix}/namespaces/{ns}/tables/{t} (metadata, FileIO config,
//!                                                              vended credentials)
//!   create: POST .../namespaces/{ns}/tables  stage-create      (metadata, nothing registered)
//!   commit: POST .../namespaces/{ns}/tables/{t}               (requirements + updates;
//!           assert-create plus the creation updates for a staged table)
//!             200 -> committed   409 -> conflict   5xx/timeout -> outcome unknown
//! ```
//!
//! Tokens are refreshed before they expire and once more on a 401. Secrets (`credential`,
//! `token`, `s3.secret-access-key`, ...) are never part of an error, a log line or `Debug` output.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::io::FileIO;
use iceberg::spec::{Schema, TableMetadata, UnboundPartitionSpec};
use iceberg::{NamespaceIdent, TableIdent, TableRequirement, TableUpdate};
use iceberg_catalog_rest::{
    CommitTableRequest, CommitTableResponse, CreateTableRequest, LoadTableResult,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::config::{is_loopback, origin_of, redact_urls};
use super::{CatalogConfig, CommitOutcome, TableState, display_ident, storage};
use crate::error::{FloeError, Result};

/// OAuth2 scope asked for when the configuration names none (pyiceberg's default).
const DEFAULT_SCOPE: &str = "catalog";
/// How long before its expiry a token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Attempts for idempotent reads (GET) on transport errors, 429 and 5xx.
const READ_ATTEMPTS: u32 = 4;
/// Upper bound on one request, so a hung server cannot hang a load.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A value that never prints.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug)]
struct Token {
    value: Secret,
    /// When to fetch a new one; `None` when the server did not say when it expires.
    refresh_at: Option<Instant>,
}

#[derive(Debug)]
enum Auth {
    None,
    /// A fixed token (`token` property).
    Bearer(Secret),
    /// OAuth2 client credentials (`credential` = `client-id:client-secret` or `client-secret`).
    ClientCredentials {
        token_url: String,
        client_id: Option<String>,
        secret: Secret,
        scope: String,
        /// `audience`, `resource`: passed through to the token endpoint when set.
        extra: Vec<(String, String)>,
        token: Mutex<Option<Token>>,
    },
}

/// An opened REST catalog.
pub(super) struct RestCatalog {
    name: String,
    http: reqwest::Client,
    /// `{uri}/v1` or `{uri}/v1/{prefix}`.
    base: String,
    /// Catalog properties after the server's defaults and overrides.
    props: BTreeMap<String, String>,
    auth: Auth,
}

impl fmt::Debug for RestCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestCatalog")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ConfigResponse {
    #[serde(default)]
    defaults: HashMap<String, String>,
    #[serde(default)]
    overrides: HashMap<String, String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorModel,
}

#[derive(Deserialize)]
struct ErrorModel {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// A transport failure, told apart by whether the request may have reached the server.
enum SendError {
    /// The connection was never made: the server saw nothing.
    NotSent(String),
    /// The request may have been processed (timeout, connection reset, broken response).
    Unknown(String),
}

impl SendError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        let text = describe(&e);
        if e.is_connect() || e.is_builder() {
            SendError::NotSent(text)
        } else {
            SendError::Unknown(text)
        }
    }

    fn text(&self) -> &str {
        match self {
            SendError::NotSent(t) | SendError::Unknown(t) => t,
        }
    }
}

/// A reqwest error with its causes, without the URL's query (which never holds secrets here,
/// but keeps messages short).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    redact_urls(&text)
}

/// User property: accept a server's `uri` / `oauth2-server-uri` on another origin.
const ALLOW_CROSS_ORIGIN: &str = "rest.allow-cross-origin-endpoints";
/// User property: send credentials over plain http to a host that is not this machine.
const ALLOW_INSECURE_HTTP: &str = "rest.allow-insecure-http";

fn enabled(props: &BTreeMap<String, String>, key: &str) -> bool {
    props
        .get(key)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A server's configuration may move the catalog or its token endpoint; a move to another
/// origin would send the client secret or tokens there, so it is ignored unless the user opts
/// in with [`ALLOW_CROSS_ORIGIN`].
fn keep_endpoints_home(
    props: &mut BTreeMap<String, String>,
    user: &BTreeMap<String, String>,
    uri: &str,
) {
    if enabled(user, ALLOW_CROSS_ORIGIN) {
        return;
    }
    let home = origin_of(uri);
    for key in ["uri", "oauth2-server-uri"] {
        let Some(value) = props.get(key) else {
            continue;
        };
        if user.get(key) == Some(value) || origin_of(value) == home {
            continue;
        }
        tracing::warn!(
            key,
            value = %redact_urls(value),
            "the catalog's configuration points at another origin; ignored (set {ALLOW_CROSS_ORIGIN}=true to accept)"
        );
        match user.get(key) {
            Some(own) => props.insert(key.to_string(), own.clone()),
            None => props.remove(key),
        };
    }
}

/// Refuses to send credentials (client secret, token, extra headers) over plain http to a
/// host other than this machine, unless the user opts in with [`ALLOW_INSECURE_HTTP`].
fn check_transport(props: &BTreeMap<String, String>, uri: &str) -> std::result::Result<(), String> {
    let secrets = props
        .keys()
        .any(|k| k == "credential" || k == "token" || k.starts_with("header."));
    if !secrets || enabled(props, ALLOW_INSECURE_HTTP) {
        return Ok(());
    }
    let endpoints = std::iter::once(uri).chain(props.get("oauth2-server-uri").map(String::as_str));
    for url in endpoints {
        if url.to_ascii_lowercase().starts_with("http://") && !is_loopback(url) {
            return Err(format!(
                "refusing to send credentials over plain http to {}; use https, or set {ALLOW_INSECURE_HTTP}=true to allow it",
                redact_urls(url)
            ));
        }
    }
    Ok(())
}

impl RestCatalog {
    pub(super) async fn open(config: CatalogConfig) -> Result<Self> {
        let name = config.name.clone();
        let fail = |reason: String| FloeError::Catalog {
            catalog: name.clone(),
            reason: redact_urls(&reason),
        };
        let mut props = config.props.clone();
        let uri = props
            .get("uri")
            .ok_or_else(|| {
                fail(
                    "a rest catalog needs a 'uri' (for example https://catalog.example.com)".into(),
                )
            })?
            .trim_end_matches('/')
            .to_string();
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(fail(format!(
                "uri '{uri}' must start with http:// or https://"
            )));
        }
        if props
            .get("rest.sigv4-enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(fail(
                "rest.sigv4-enabled is not supported yet; use OAuth2 (credential) or a token"
                    .into(),
            ));
        }
        check_transport(&props, &uri).map_err(fail)?;
        let http = http_client(&props).map_err(fail)?;
        let auth = auth_from(&props, &uri);
        let mut catalog = Self {
            name: name.clone(),
            http,
            base: format!("{uri}/v1"),
            props: props.clone(),
            auth,
        };

        // Server configuration: defaults under the user's properties, overrides above them.
        let mut url = format!("{uri}/v1/config");
        if let Some(warehouse) = props.get("warehouse") {
            url = format!("{url}?warehouse={}", encode(warehouse));
        }
        let server: ConfigResponse = catalog
            .get_json(&url, "cannot read the catalog configuration")
            .await?
            .ok_or_else(|| {
                fail(format!(
                    "{uri}/v1/config not found: is '{uri}' an Iceberg REST catalog?"
                ))
            })?;
        for (k, v) in server.defaults {
            props.entry(k).or_insert(v);
        }
        props.extend(server.overrides);
        keep_endpoints_home(&mut props, &config.props, &uri);
        let uri = props
            .get("uri")
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or(uri);
        catalog.base = match props.get("prefix").filter(|p| !p.is_empty()) {
            Some(prefix) => format!("{uri}/v1/{}", prefix.trim_matches('/')),
            None => format!("{uri}/v1"),
        };
        // Server-side settings that shape requests (headers, TLS, where tokens come from)
        // apply from here on, as pyiceberg applies them.
        let shapes_requests = |k: &String| {
            k.starts_with("header.")
                || k.starts_with("ssl.")
                || ["uri", "token", "credential", "oauth2-server-uri", "scope"]
                    .contains(&k.as_str())
        };
        let before: Vec<_> = catalog
            .props
            .iter()
            .filter(|(k, _)| shapes_requests(k))
            .collect();
        let after: Vec<_> = props.iter().filter(|(k, _)| shapes_requests(k)).collect();
        check_transport(&props, &uri).map_err(fail)?;
        if before != after {
            catalog.http = http_client(&props).map_err(fail)?;
            catalog.auth = auth_from(&props, &uri);
        }
        catalog.props = props;
        tracing::debug!(catalog = %name, base = %catalog.base, "rest catalog opened");
        Ok(catalog)
    }

    pub(super) async fn load_table(&self, ident: &TableIdent) -> Result<Option<TableState>> {
        let url = self.table_url(ident);
        let what = format!("cannot load table {}", display_ident(ident));
        let Some(result) = self.get_json::<LoadTableResult>(&url, &what).await? else {
            return Ok(None);
        };
        let metadata_location = result.metadata_location.clone().ok_or_else(|| {
            self.error(format!("{what}: the catalog returned no metadata location"))
        })?;
        let file_io = self.table_file_io(&result)?;
        Ok(Some(TableState {
            ident: ident.clone(),
            metadata: Arc::new(result.metadata),
            metadata_location: Some(metadata_location),
            file_io,
        }))
    }

    /// Points `ident` (not registered yet) at an existing metadata file (`register`).
    pub(super) async fn register_table(
        &self,
        ident: &TableIdent,
        metadata_location: &str,
    ) -> Result<()> {
        let url = format!(
            "{}/namespaces/{}/register",
            self.base,
            namespace_path(ident.namespace())
        );
        let body = serde_json::json!({
            "name": ident.name(),
            "metadata-location": metadata_location,
        });
        let what = format!("cannot register table {}", display_ident(ident));
        let response = self
            .send(|http| http.post(&url).json(&body))
            .await?
            .map_err(|e| self.error(format!("{what}: {}", e.text())))?;
        if !response.status().is_success() {
            return Err(self.status_error(&what, response).await);
        }
        Ok(())
    }

    /// Creates one namespace level if it is missing.
    pub(super) async fn ensure_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        let url = format!("{}/namespaces/{}", self.base, namespace_path(ns));
        let what = format!("cannot look up namespace {}", ns.join("."));
        if self
            .get_json::<serde_json::Value>(&url, &what)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let body = serde_json::json!({ "namespace": ns.clone().inner(), "properties": {} });
        let url = format!("{}/namespaces", self.base);
        let response = self
            .send(|http| http.post(&url).json(&body))
            .await?
            .map_err(|e| {
                self.error(format!(
                    "cannot create namespace {}: {}",
                    ns.join("."),
                    e.text()
                ))
            })?;
        match response.status() {
            s if s.is_success() => Ok(()),
            // Another loader created it in between.
            StatusCode::CONFLICT => Ok(()),
            _ => Err(self
                .status_error(
                    &format!("cannot create namespace {}", ns.join(".")),
                    response,
                )
                .await),
        }
    }

    /// Asks the catalog for a new table's metadata (`stage-create`): the location and ids are
    /// the catalog's, and nothing is registered until the load's commit.
    pub(super) async fn stage_table(
        &self,
        ident: &TableIdent,
        schema: Schema,
        partition_spec: Option<UnboundPartitionSpec>,
        properties: HashMap<String, String>,
        location: Option<String>,
    ) -> Result<TableState> {
        let mut request = CreateTableRequest {
            name: ident.name().to_string(),
            location,
            schema,
            partition_spec,
            write_order: None,
            stage_create: Some(true),
            properties,
        };
        let url = format!(
            "{}/namespaces/{}/tables",
            self.base,
            namespace_path(ident.namespace())
        );
        let what = format!("cannot prepare table {}", display_ident(ident));
        let response = self
            .send(|http| http.post(&url).json(&request))
            .await?
            .map_err(|e| self.error(format!("{what}: {}", e.text())))?;
        let status = response.status();
        if matches!(
            status,
            StatusCode::BAD_REQUEST
                | StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::NOT_ACCEPTABLE
                | StatusCode::NOT_IMPLEMENTED
        ) {
            // A catalog without staged creation: create the table now and load into it. The
            // load is still one snapshot, but a failed load leaves the empty table behind.
            let message = error_message(status, response).await;
            tracing::warn!(table = %display_ident(ident), %message, "the catalog refused a staged create; creating the table before the load");
            request.stage_create = Some(false);
            let response = self
                .send(|http| http.post(&url).json(&request))
                .await?
                .map_err(|e| self.error(format!("{what}: {}", e.text())))?;
            if response.status() == StatusCode::CONFLICT {
                // Another loader created it first: load into that table.
                if let Some(existing) = self.load_table(ident).await? {
                    return Ok(existing);
                }
            }
            if !response.status().is_success() {
                return Err(self.status_error(&what, response).await);
            }
            let result: LoadTableResult = self.parse(response, &what).await?;
            let Some(location) = result.metadata_location.clone() else {
                return Err(self.error(format!(
                    "{what}: the catalog created the table but returned no metadata location"
                )));
            };
            return Ok(TableState {
                ident: ident.clone(),
                file_io: self.table_file_io(&result)?,
                metadata: Arc::new(result.metadata),
                metadata_location: Some(location),
            });
        }
        if status == StatusCode::CONFLICT
            && let Some(existing) = self.load_table(ident).await?
        {
            // Created by another loader since we looked: load into that table.
            return Ok(existing);
        }
        if !status.is_success() {
            return Err(self.status_error(&what, response).await);
        }
        let result: LoadTableResult = self.parse(response, &what).await?;
        let file_io = self.table_file_io(&result)?;
        Ok(TableState {
            ident: ident.clone(),
            metadata: Arc::new(result.metadata),
            // A catalog that ignored stage-create and created the table says where it is.
            metadata_location: result.metadata_location,
            file_io,
        })
    }

    /// Sends one commit. A staged table is created by it: the creation updates go first, and
    /// the producer's `assert-create` requirement guards them.
    pub(super) async fn commit(
        &self,
        base: &TableState,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<CommitOutcome> {
        let table = base.name();
        let updates = if base.is_staged() {
            let mut all = creation_updates(&base.metadata);
            all.extend(updates);
            all
        } else {
            updates
        };
        let request = CommitTableRequest {
            identifier: Some(base.ident.clone()),
            requirements: requirements.to_vec(),
            updates,
        };
        let url = self.table_url(&base.ident);
        let what = format!("commit to table {table}");
        let response = match self.send(|http| http.post(&url).json(&request)).await? {
            Ok(r) => r,
            Err(SendError::NotSent(e)) => {
                return Err(self.error(format!("{what} failed, the catalog was not reached: {e}")));
            }
            Err(SendError::Unknown(e)) => return Ok(CommitOutcome::Unknown(e)),
        };
        let status = response.status();
        if status.is_success() {
            return match response.json::<CommitTableResponse>().await {
                Ok(r) => Ok(CommitOutcome::Committed {
                    metadata_location: r.metadata_location,
                    metadata: Arc::new(r.metadata),
                }),
                // The catalog said yes; the table will show what it holds.
                Err(e) => Ok(CommitOutcome::Unknown(format!(
                    "unreadable commit response: {}",
                    describe(&e)
                ))),
            };
        }
        let message = error_message(status, response).await;
        match status {
            StatusCode::CONFLICT => Ok(CommitOutcome::Conflict(message)),
            // "See other" answers a request that was processed: the table tells the outcome.
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::SEE_OTHER =>
            {
                Ok(CommitOutcome::Unknown(message))
            }
            _ => Err(self.error(format!("{what} was refused: {message}"))),
        }
    }

    fn table_url(&self, ident: &TableIdent) -> String {
        format!(
            "{}/namespaces/{}/tables/{}",
            self.base,
            namespace_path(ident.namespace()),
            encode(ident.name())
        )
    }

    /// Storage for one table: catalog properties, then the table's `config`, then the vended
    /// credentials whose prefix matches the table location best.
    fn table_file_io(&self, result: &LoadTableResult) -> Result<FileIO> {
        let location = result.metadata.location().to_string();
        let mut props = self.props.clone();
        props.extend(result.config.clone());
        if let Some(credential) = result
            .storage_credentials
            .iter()
            .flatten()
            .filter(|c| location.starts_with(&c.prefix))
            .max_by_key(|c| c.prefix.len())
        {
            props.extend(credential.config.clone());
        }
        storage::file_io(&location, &props)
            .map_err(|e| self.error(format!("table location '{location}': {e}")))
    }

    fn error(&self, reason: String) -> FloeError {
        FloeError::Catalog {
            catalog: self.name.clone(),
            reason: redact_urls(&reason),
        }
    }

    async fn status_error(&self, what: &str, response: Response) -> FloeError {
        let status = response.status();
        let message = error_message(status, response).await;
        let hint = match status {
            StatusCode::UNAUTHORIZED => " (check the catalog's 'credential' or 'token')",
            StatusCode::FORBIDDEN => " (the credentials lack permission)",
            _ => "",
        };
        let reason = redact_urls(&format!("{what}: {message}{hint}"));
        let transient = matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS
        ) || status.as_u16() == 419;
        if status.is_client_error() && !transient {
            FloeError::CatalogRefused {
                catalog: self.name.clone(),
                reason,
            }
        } else {
            FloeError::Catalog {
                catalog: self.name.clone(),
                reason,
            }
        }
    }

    async fn parse<T: serde::de::DeserializeOwned>(
        &self,
        response: Response,
        what: &str,
    ) -> Result<T> {
        let body = response
            .bytes()
            .await
            .map_err(|e| self.error(format!("{what}: {}", describe(&e))))?;
        serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("{what}: unexpected response from the catalog: {e}")))
    }

    /// A GET with retries on transient failures; `None` on 404.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<Option<T>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let retry = attempt < READ_ATTEMPTS;
            let response = match self.send(|http| http.get(url)).await? {
                Ok(r) => r,
                Err(e) if retry => {
                    tracing::debug!(what, error = e.text(), attempt, "retrying catalog read");
                    backoff(attempt).await;
                    continue;
                }
                Err(e) => return Err(self.error(format!("{what}: {}", e.text()))),
            };
            let status = response.status();
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) && retry {
                tracing::debug!(what, %status, attempt, "retrying catalog read");
                backoff(attempt).await;
                continue;
            }
            if !status.is_success() {
                return Err(self.status_error(what, response).await);
            }
            return self.parse(response, what).await.map(Some);
        }
    }

    /// Sends a request with the current token; on a 401 fetches a new token and sends once more.
    /// The outer error is an authentication failure, the inner one a transport failure.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<std::result::Result<Response, SendError>> {
        let mut renewed = false;
        loop {
            let mut request = build(&self.http);
            if let Some(token) = self.token(renewed).await? {
                request = request.bearer_auth(&token.0);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => return Ok(Err(SendError::from_reqwest(e))),
            };
            if response.status() == StatusCode::UNAUTHORIZED
                && !renewed
                && matches!(self.auth, Auth::ClientCredentials { .. })
            {
                tracing::debug!("catalog answered 401, fetching a new token");
                renewed = true;
                continue;
            }
            if response.status().is_redirection() && response.status() != StatusCode::SEE_OTHER {
                // Not applied: the server says the resource lives elsewhere.
                let target = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| l.split('?').next().unwrap_or_default().to_string())
                    .unwrap_or_default();
                return Err(self.error(format!(
                    "the catalog answered {} (redirect to '{target}'); floe does not follow redirects, so nothing was sent there: set the catalog's uri to the address the server wants",
                    response.status()
                )));
            }
            return Ok(Ok(response));
        }
    }

    /// The bearer token to send, fetching one when there is none, it is due, or `renew`.
    async fn token(&self, renew: bool) -> Result<Option<Secret>> {
        let Auth::ClientCredentials {
            token_url,
            client_id,
            secret,
            scope,
            extra,
            token,
        } = &self.auth
        else {
            return Ok(match &self.auth {
                Auth::Bearer(t) => Some(t.clone()),
                _ => None,
            });
        };
        let mut cached = token.lock().await;
        if let Some(t) = cached.as_ref()
            && !renew
            && t.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(Some(t.value.clone()));
        }
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_secret", &secret.0),
            ("scope", scope),
        ];
        if let Some(id) = client_id {
            form.push(("client_id", id));
        }
        for (k, v) in extra {
            form.push((k, v));
        }
        let what = format!("cannot get an OAuth2 token from {token_url}");
        let response = self
            .http
            .post(token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| self.error(format!("{what}: {}", describe(&e))))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let detail = match serde_json::from_str::<OAuthError>(&body) {
                Ok(e) => match e.error_description {
                    Some(d) => format!("{}: {d}", e.error),
                    None => e.error,
                },
                Err(_) => match serde_json::from_str::<ErrorEnvelope>(&body) {
                    Ok(e) => e.error.message,
                    Err(_) => format!("HTTP {status}"),
                },
            };
            return Err(self.error(format!(
                "authentication failed ({detail}); check the catalog's 'credential'"
            )));
        }
        let body: TokenResponse = self.parse(response, &what).await?;
        let refresh_at = body.expires_in.map(|secs| {
            let lifetime = Duration::from_secs(secs);
            Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2))
        });
        let value = Secret(body.access_token);
        *cached = Some(Token {
            value: value.clone(),
            refresh_at,
        });
        Ok(Some(value))
    }
}

/// The updates that create a staged table, as the REST spec asks: everything a new table's
/// metadata holds, before the load's own snapshot updates.
fn creation_updates(metadata: &TableMetadata) -> Vec<TableUpdate> {
    let mut updates = vec![
        TableUpdate::AssignUuid {
            uuid: metadata.uuid(),
        },
        TableUpdate::UpgradeFormatVersion {
            format_version: metadata.format_version(),
        },
        TableUpdate::AddSchema {
            schema: metadata.current_schema().as_ref().clone(),
        },
        TableUpdate::SetCurrentSchema { schema_id: -1 },
        TableUpdate::AddSpec {
            spec: metadata
                .default_partition_spec()
                .as_ref()
                .clone()
                .into_unbound(),
        },
        TableUpdate::SetDefaultSpec { spec_id: -1 },
        TableUpdate::AddSortOrder {
            sort_order: metadata.default_sort_order().as_ref().clone(),
        },
        TableUpdate::SetDefaultSortOrder { sort_order_id: -1 },
        TableUpdate::SetLocation {
            location: metadata.location().to_string(),
        },
    ];
    if !metadata.properties().is_empty() {
        updates.push(TableUpdate::SetProperties {
            updates: metadata.properties().clone(),
        });
    }
    updates
}

fn auth_from(props: &BTreeMap<String, String>, uri: &str) -> Auth {
    if let Some(token) = props.get("token") {
        return Auth::Bearer(Secret(token.clone()));
    }
    let Some(credential) = props.get("credential") else {
        return Auth::None;
    };
    let (client_id, secret) = match credential.split_once(':') {
        Some((id, secret)) => (Some(id.to_string()), secret.to_string()),
        None => (None, credential.clone()),
    };
    let extra = ["audience", "resource"]
        .iter()
        .filter_map(|k| props.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    Auth::ClientCredentials {
        token_url: props
            .get("oauth2-server-uri")
            .cloned()
            .unwrap_or_else(|| format!("{uri}/v1/oauth/tokens")),
        client_id,
        secret: Secret(secret),
        scope: props
            .get("scope")
            .cloned()
            .unwrap_or_else(|| DEFAULT_SCOPE.to_string()),
        extra,
        token: Mutex::new(None),
    }
}

/// The HTTP client: timeouts, `header.*` properties as headers, and `ssl.cabundle` as an extra
/// trusted root for https catalogs with a private CA.
fn http_client(props: &BTreeMap<String, String>) -> std::result::Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    // Ask for vended credentials, as pyiceberg does; catalogs that do not vend ignore it.
    headers.insert(
        HeaderName::from_static("x-iceberg-access-delegation"),
        HeaderValue::from_static("vended-credentials"),
    );
    for (key, value) in props {
        if let Some(name) = key.strip_prefix("header.") {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("'{key}' is not a valid HTTP header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of '{key}' is not a valid HTTP header value"))?;
            headers.insert(name, value);
        }
    }
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("floe/", env!("CARGO_PKG_VERSION")))
        // A redirected POST would be re-sent as a GET whose answer looks like a commit's (and
        // credentials would follow the redirect): a redirect is an answer, never followed.
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(path) = props.get("ssl.cabundle") {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read ssl.cabundle {path}: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ssl.cabundle {path}: {e}"))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", describe(&e)))
}

async fn error_message(status: StatusCode, response: Response) -> String {
    let body = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorEnvelope>(&body) {
        Ok(e) if !e.error.message.is_empty() => {
            format!("HTTP {status} {}: {}", e.error.kind, e.error.message)
        }
        _ => {
            let body: String = body.chars().take(300).collect();
            format!("HTTP {status} {}", body.trim())
        }
    }
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(200u64 << attempt.min(5))).await;
}

/// A namespace as one path segment: levels joined by the unit separator, percent-encoded.
fn namespace_path(ns: &NamespaceIdent) -> String {
    encode(&ns.join("\u{1f}"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_names_are_encoded() {
        let ns = NamespaceIdent::from_strs(["a", "b c"]).unwrap();
        assert_eq!(namespace_path(&ns), "a%1Fb%20c");
        assert_eq!(encode("s3://tables"), "s3%3A%2F%2Ftables");
    }

    #[test]
    fn secrets_do_not_print() {
        let props: BTreeMap<String, String> = [("credential", "id:very-secret")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let auth = auth_from(&props, "http://x");
        let shown = format!("{auth:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("http://x/v1/oauth/tokens"), "{shown}");
    }

    #[test]
    fn staged_tables_are_created_with_their_whole_metadata() {
        let schema = Schema::builder()
            .with_fields(vec![std::sync::Arc::new(
                iceberg::spec::NestedField::required(
                    1,
                    "id",
                    iceberg::spec::Type::Primitive(iceberg::spec::PrimitiveType::Long),
                ),
            )])
            .build()
            .unwrap();
        let ident = TableIdent::from_strs(["ns", "t"]).unwrap();
        let metadata = super::super::staged_metadata(
            &ident,
            "s3://b/ns/t".into(),
            schema,
            None,
            HashMap::from([("k".to_string(), "v".to_string())]),
        )
        .unwrap();
        let updates = creation_updates(&metadata);
        // Replaying them on an empty builder gives the staged table back.
        let mut builder = iceberg::spec::TableMetadataBuilder::new(
            Schema::builder().build().unwrap(),
            iceberg::spec::PartitionSpec::unpartition_spec(),
            iceberg::spec::SortOrder::unsorted_order(),
            "s3://elsewhere".into(),
            iceberg::spec::FormatVersion::V1,
            HashMap::new(),
        )
        .unwrap();
        for update in updates {
            builder = update.apply(builder).unwrap();
        }
        let rebuilt = builder.build().unwrap().metadata;
        assert_eq!(rebuilt.location(), "s3://b/ns/t");
        assert_eq!(rebuilt.uuid(), metadata.uuid());
        assert_eq!(
            rebuilt.current_schema().as_struct(),
            metadata.current_schema().as_struct()
        );
        assert_eq!(rebuilt.properties().get("k").map(String::as_str), Some("v"));
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn server_config_cannot_move_endpoints_to_another_origin() {
        let user = props(&[
            ("uri", "https://cat.example.com"),
            ("credential", "id:secret"),
        ]);
        let mut merged = user.clone();
        merged.insert(
            "oauth2-server-uri".into(),
            "https://evil.example/tokens".into(),
        );
        merged.insert("uri".into(), "https://cat.example.com/other".into());
        keep_endpoints_home(&mut merged, &user, "https://cat.example.com");
        assert!(!merged.contains_key("oauth2-server-uri"));
        // The same origin is fine.
        assert_eq!(merged["uri"], "https://cat.example.com/other");
        let mut opted = user.clone();
        opted.insert(ALLOW_CROSS_ORIGIN.into(), "true".into());
        let mut merged = opted.clone();
        merged.insert(
            "oauth2-server-uri".into(),
            "https://idp.example/tokens".into(),
        );
        keep_endpoints_home(&mut merged, &opted, "https://cat.example.com");
        assert_eq!(merged["oauth2-server-uri"], "https://idp.example/tokens");
    }

    #[test]
    fn credentials_never_travel_over_plain_http_to_another_host() {
        let remote = props(&[("credential", "id:secret")]);
        let err = check_transport(&remote, "http://cat.example.com:8181").unwrap_err();
        assert!(
            err.contains(ALLOW_INSECURE_HTTP) && !err.contains("secret@"),
            "{err}"
        );
        assert!(check_transport(&remote, "https://cat.example.com").is_ok());
        assert!(check_transport(&remote, "http://127.0.0.1:8181").is_ok());
        assert!(check_transport(&props(&[]), "http://cat.example.com").is_ok());
        let mut opted = remote.clone();
        opted.insert(ALLOW_INSECURE_HTTP.into(), "true".into());
        assert!(check_transport(&opted, "http://cat.example.com").is_ok());
    }
}
