//! Catalog configuration, resolved the way pyiceberg resolves it.
//!
//! Sources, later ones overriding earlier ones:
//! 1. `.pyiceberg.yaml`, the first found in `$PYICEBERG_HOME`, `$HOME`, the current directory;
//! 2. `PYICEBERG_CATALOG__<NAME>__<KEY>` environment variables (`__` in KEY becomes `.`, `_`
//!    becomes `-`, names are case-insensitive), and `PYICEBERG_DEFAULT_CATALOG`.
//!
//! With no configuration at all, the catalog named `default` is floe's embedded one: a SQLite
//! SQL catalog at `./warehouse/catalog.db` with table data under `./warehouse`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{FloeError, Result};

/// Name of the catalog used when none is named.
pub const DEFAULT_CATALOG_NAME: &str = "default";
/// Directory of the embedded catalog when nothing else is configured.
pub const DEFAULT_WAREHOUSE_DIR: &str = "warehouse";

/// The properties of one named catalog.
#[derive(Clone, PartialEq, Eq)]
pub struct CatalogConfig {
    /// The catalog's name (also the `catalog_name` column of a SQL catalog).
    pub name: String,
    /// Catalog properties with pyiceberg's key names (`type`, `uri`, `warehouse`, `s3.*`, ...).
    pub props: BTreeMap<String, String>,
}

/// Whether a property holds a secret (its value never prints). Extra request headers
/// (`header.*`) count as secrets: they often carry API keys.
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.starts_with("header.")
        || [
            "secret",
            "token",
            "credential",
            "password",
            "key-id",
            "session",
        ]
        .iter()
        .any(|s| key.contains(s))
}

/// `text` with the user-info part of every URL in it (`scheme://user:password@host`) hidden.
pub(crate) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| {
                c == '/'
                    || c == '?'
                    || c == '#'
                    || c.is_whitespace()
                    || c == '\''
                    || c == '"'
                    || c == ')'
            })
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(userinfo) => {
                out.push_str("<redacted>@");
                out.push_str(&authority[userinfo + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// The `scheme://host:port` of a URL, lower-cased (default ports made explicit).
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?.to_ascii_lowercase();
    let scheme = scheme.to_ascii_lowercase();
    let has_port = host_port.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !host_port.ends_with(']')
    });
    let default_port = match scheme.as_str() {
        "https" => "443",
        _ => "80",
    };
    Some(if has_port {
        format!("{scheme}://{host_port}")
    } else {
        format!("{scheme}://{host_port}:{default_port}")
    })
}

/// Whether a URL points at this machine (plain http is acceptable there).
pub(crate) fn is_loopback(url: &str) -> bool {
    let Some(origin) = origin_of(url) else {
        return false;
    };
    let host = origin.split_once("://").map(|(_, h)| h).unwrap_or_default();
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

impl std::fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .props
            .iter()
            .map(|(k, v)| {
                let v = if is_secret(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("CatalogConfig")
            .field("name", &self.name)
            .field("props", &props)
            .finish()
    }
}

impl CatalogConfig {
    /// The embedded default: a SQLite catalog and data under `warehouse_dir`.
    pub fn embedded(warehouse_dir: &Path) -> Result<Self> {
        let dir = absolute(warehouse_dir)?;
        let mut props = BTreeMap::new();
        props.insert("type".to_string(), "sql".to_string());
        props.insert(
            "uri".to_string(),
            format!("sqlite:///{}", dir.join("catalog.db").display()),
        );
        props.insert("warehouse".to_string(), format!("file://{}", dir.display()));
        Ok(Self {
            name: DEFAULT_CATALOG_NAME.to_string(),
            props,
        })
    }

    /// Resolves the catalog to use from the user's choices, the config file and the environment.
    ///
    /// `warehouse` selects the embedded catalog in that directory and cannot be combined with a
    /// named catalog.
    pub fn resolve(catalog: Option<&str>, warehouse: Option<&Path>) -> Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let yaml = find_config_file()
            .map(|p| read_config_file(&p))
            .transpose()?;
        Self::resolve_from(catalog, warehouse, yaml.as_ref(), &env)
    }

    fn resolve_from(
        catalog: Option<&str>,
        warehouse: Option<&Path>,
        yaml: Option<&ConfigFile>,
        env: &[(String, String)],
    ) -> Result<Self> {
        if let Some(dir) = warehouse {
            if let Some(name) = catalog {
                return Err(FloeError::InvalidOption(format!(
                    "--warehouse selects the embedded catalog; it cannot be combined with --catalog {name}"
                )));
            }
            return Self::embedded(dir);
        }
        let mut catalogs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut default_name = None;
        if let Some(file) = yaml {
            for (name, props) in &file.catalogs {
                catalogs.insert(name.to_lowercase(), props.clone());
            }
            default_name = file.default_catalog.clone();
        }
        for (key, value) in env {
            if key.eq_ignore_ascii_case("PYICEBERG_DEFAULT_CATALOG") {
                default_name = Some(value.clone());
            } else if let Some((name, prop)) = parse_env_key(key) {
                catalogs
                    .entry(name)
                    .or_default()
                    .insert(prop, value.clone());
            }
        }
        let name = catalog
            .map(str::to_string)
            .or(default_name)
            .unwrap_or_else(|| DEFAULT_CATALOG_NAME.to_string());
        match catalogs.remove(&name.to_lowercase()) {
            Some(props) => Ok(Self { name, props }),
            None if name == DEFAULT_CATALOG_NAME => Self::embedded(Path::new(DEFAULT_WAREHOUSE_DIR)),
            None => Err(FloeError::Catalog {
                catalog: name,
                reason: "not configured: no such entry in .pyiceberg.yaml ($PYICEBERG_HOME, $HOME or ./) nor PYICEBERG_CATALOG__<NAME>__* environment variables".to_string(),
            }),
        }
    }

    /// The catalog type, inferred from the URI as pyiceberg does when `type` is absent.
    pub fn kind(&self) -> String {
        if let Some(kind) = self.props.get("type") {
            return kind.to_lowercase();
        }
        match self.props.get("uri") {
            Some(uri) if uri.starts_with("http://") || uri.starts_with("https://") => "rest".into(),
            Some(uri) if uri.starts_with("thrift://") => "hive".into(),
            Some(uri) if uri.starts_with("sqlite") || uri.starts_with("postgresql") => "sql".into(),
            _ => "rest".into(),
        }
    }
}

/// `PYICEBERG_CATALOG__LAKE__S3__ACCESS_KEY_ID` -> (`lake`, `s3.access-key-id`).
fn parse_env_key(key: &str) -> Option<(String, String)> {
    let upper = key.to_ascii_uppercase();
    let rest = upper.strip_prefix("PYICEBERG_CATALOG__")?;
    let rest_orig = &key[key.len() - rest.len()..];
    let (name, prop) = rest_orig.split_once("__")?;
    if name.is_empty() || prop.is_empty() {
        return None;
    }
    let prop = prop.to_lowercase().replace("__", ".").replace('_', "-");
    Some((name.to_lowercase(), prop))
}

#[derive(Debug, Default)]
struct ConfigFile {
    catalogs: BTreeMap<String, BTreeMap<String, String>>,
    default_catalog: Option<String>,
}

fn find_config_file() -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("PYICEBERG_HOME") {
        dirs.push(PathBuf::from(home));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home));
    }
    dirs.push(PathBuf::from("."));
    dirs.into_iter()
        .map(|d| d.join(".pyiceberg.yaml"))
        .find(|p| p.is_file())
}

fn read_config_file(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).map_err(|e| FloeError::Catalog {
        catalog: "*".into(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    parse_config(&text).map_err(|reason| FloeError::Catalog {
        catalog: "*".into(),
        reason: format!("{}: {reason}", path.display()),
    })
}

fn parse_config(text: &str) -> std::result::Result<ConfigFile, String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = ConfigFile::default();
    if doc.is_null() {
        return Ok(out);
    }
    let map = doc.as_mapping().ok_or("top level must be a mapping")?;
    if let Some(name) = map.get("default-catalog") {
        out.default_catalog = Some(scalar(name).ok_or("default-catalog must be a string")?);
    }
    if let Some(catalogs) = map.get("catalog") {
        let catalogs = catalogs.as_mapping().ok_or("'catalog' must be a mapping")?;
        for (name, props) in catalogs {
            let name = scalar(name).ok_or("catalog names must be strings")?;
            let mut flat = BTreeMap::new();
            if let Some(props) = props.as_mapping() {
                for (k, v) in props {
                    let k = scalar(k).ok_or("property names must be strings")?;
                    let v = scalar(v).ok_or_else(|| {
                        format!("catalog '{name}': property '{k}' must be a scalar")
                    })?;
                    flat.insert(k, v);
                }
            }
            out.catalogs.insert(name, flat);
        }
    }
    Ok(out)
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| FloeError::Io {
        context: format!("cannot resolve path {}", path.display()),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_follow_pyiceberg_rules() {
        assert_eq!(
            parse_env_key("PYICEBERG_CATALOG__LAKE__S3__ACCESS_KEY_ID"),
            Some(("lake".into(), "s3.access-key-id".into()))
        );
        assert_eq!(
            parse_env_key("PYICEBERG_CATALOG__prod__URI"),
            Some(("prod".into(), "uri".into()))
        );
        assert_eq!(parse_env_key("PYICEBERG_CATALOG__X"), None);
        assert_eq!(parse_env_key("OTHER"), None);
    }

    #[test]
    fn env_overrides_yaml_and_picks_default() {
        let yaml = parse_config(
            "default-catalog: lake\ncatalog:\n  lake:\n    type: sql\n    uri: sqlite:///a.db\n    warehouse: file:///w\n",
        )
        .unwrap();
        let env = vec![(
            "PYICEBERG_CATALOG__LAKE__URI".to_string(),
            "sqlite:///b.db".to_string(),
        )];
        let cfg = CatalogConfig::resolve_from(None, None, Some(&yaml), &env).unwrap();
        assert_eq!(cfg.name, "lake");
        assert_eq!(cfg.props["uri"], "sqlite:///b.db");
        assert_eq!(cfg.props["warehouse"], "file:///w");
    }

    #[test]
    fn unconfigured_default_is_embedded() {
        let cfg = CatalogConfig::resolve_from(None, None, None, &[]).unwrap();
        assert_eq!(cfg.name, "default");
        assert_eq!(cfg.kind(), "sql");
        assert!(cfg.props["uri"].ends_with("/warehouse/catalog.db"));
    }

    #[test]
    fn unknown_named_catalog_is_an_error() {
        let err = CatalogConfig::resolve_from(Some("prod"), None, None, &[]).unwrap_err();
        assert!(err.to_string().contains("prod"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut props = BTreeMap::new();
        props.insert("s3.secret-access-key".to_string(), "hush-1".to_string());
        props.insert("credential".to_string(), "id:hush-2".to_string());
        props.insert("uri".to_string(), "https://catalog".to_string());
        let shown = format!(
            "{:?}",
            CatalogConfig {
                name: "x".into(),
                props
            }
        );
        assert!(!shown.contains("hush"), "{shown}");
        assert!(shown.contains("https://catalog"), "{shown}");
    }

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        let text = "cannot reach http://alice:s3cret@cat.example.com:8181/v1/config (timeout), see 'https://bob@x/y'";
        let shown = redact_urls(text);
        assert!(!shown.contains("s3cret") && !shown.contains("alice") && !shown.contains("bob"));
        assert!(
            shown.contains("http://<redacted>@cat.example.com:8181/v1/config"),
            "{shown}"
        );
        assert_eq!(redact_urls("no url here"), "no url here");
        assert!(is_secret("header.X-Api-Key"));
    }

    #[test]
    fn origins_and_loopback() {
        assert_eq!(
            origin_of("https://Cat.example.com/v1").unwrap(),
            "https://cat.example.com:443"
        );
        assert_eq!(
            origin_of("https://cat.example.com:443/x").unwrap(),
            "https://cat.example.com:443"
        );
        assert_ne!(
            origin_of("https://evil.example/x"),
            origin_of("https://cat.example.com")
        );
        assert_ne!(
            origin_of("http://cat.example.com"),
            origin_of("https://cat.example.com")
        );
        assert!(is_loopback("http://127.0.0.1:8181"));
        assert!(is_loopback("http://localhost/v1"));
        assert!(!is_loopback("http://catalog.internal:8181"));
    }

    #[test]
    fn kind_is_inferred_from_uri() {
        let mut props = BTreeMap::new();
        props.insert("uri".to_string(), "https://x".to_string());
        let cfg = CatalogConfig {
            name: "x".into(),
            props,
        };
        assert_eq!(cfg.kind(), "rest");
    }
}
