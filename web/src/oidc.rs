//! Sign-in through an OpenID Connect identity provider: ID tokens (JWTs)
//! checked against the issuer's published signing keys (a JWKS, read from
//! a file or fetched from a URL).
//!
//! - Only asymmetric signatures are accepted (RS256, ES256). `none` and the
//!   HMAC family are refused before any key is looked at, so a public key
//!   can never serve as an HMAC secret.
//! - A token must name its key (`kid`), and the key's type must fit the
//!   token's algorithm. An unknown `kid` makes the key set be read again
//!   (file or URL), at most once per `jwks_refresh_secs`: that is how key
//!   rotation at the provider is picked up.
//! - Checked: the signature, `iss` (exactly the configured issuer), `aud`
//!   (includes the configured audience), `exp` and `nbf` (with leeway), and
//!   a `sub`. Refusals say which check failed, never anything about keys.
//!
//! The principal comes from configurable claims: the user name
//! (`preferred_username`, falling back to `sub`), groups (a list or one
//! string; none = no groups, which sees nothing) and the docent role
//! (`reader`, `editor` or `admin`; missing or unknown = reader).

use base64::Engine;
use docent_core::{AccessRole, Principal};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// A JWKS document larger than this is refused (real ones are a few KiB).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where the issuer's signing keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A local JWKS JSON file (air-gapped setups; re-read on an unknown kid).
    File(PathBuf),
    /// The issuer's `jwks_uri`, fetched at startup and on an unknown kid.
    Url(String),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => f.write_str(u),
        }
    }
}

/// What `access.oidc` configures.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The `iss` every token must carry, exactly.
    pub issuer: String,
    /// A value the token's `aud` must hold (docent's client id).
    pub audience: String,
    pub jwks: JwksSource,
    /// The claim naming the user (falls back to `sub`).
    pub user_claim: String,
    /// The claim holding the caller's groups (a dotted path reaches into
    /// objects, e.g. `realm_access.roles`).
    pub groups_claim: String,
    /// The claim holding the docent role.
    pub role_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Minimum time between two reloads of the key set.
    pub jwks_refresh_secs: u64,
}

/// The key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch the JWKS from {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("the JWKS from {from} is not a JSON Web Key Set: {message}")]
    Parse { from: String, message: String },
    #[error("the JWKS from {from} holds no usable signing key (RSA or EC P-256, each with a kid)")]
    NoKeys { from: String },
}

/// Why a token was refused (the message a 401 carries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not allowed (only RS256 and ES256 are accepted)")]
    Algorithm,
    #[error("the token names no signing key (kid)")]
    NoKid,
    #[error("the token's signing key (kid) is not one of the issuer's keys")]
    UnknownKid,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was not issued by the configured issuer")]
    Issuer,
    #[error("the token is not meant for this audience")]
    Audience,
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
    #[error("the token's {0} claim has the wrong type")]
    BadClaim(String),
}

#[derive(Clone)]
struct SigningKey {
    key: DecodingKey,
    alg: Algorithm,
}

type KeyMap = HashMap<String, SigningKey>;

/// Checks ID tokens against the issuer's keys.
pub struct Verifier {
    settings: OidcSettings,
    keys: RwLock<Arc<KeyMap>>,
    /// When the key set was last loaded (or a reload was tried). Held
    /// while reloading, so concurrent unknown kids cause one reload.
    loaded_at: tokio::sync::Mutex<Instant>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.settings.issuer)
            .field("jwks", &self.settings.jwks)
            .finish_non_exhaustive()
    }
}

/// Whether a bearer token has the shape of a JWT (three base64url parts;
/// the signature may be empty, as in `alg: none`). docent API keys
/// (`dk_...`) never do.
pub fn looks_like_jwt(token: &str) -> bool {
    let b64url = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let parts: Vec<&str> = token.split('.').collect();
    !token.starts_with("dk_")
        && parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts.iter().all(|p| b64url(p))
}

impl Verifier {
    /// Loads the key set; fails (naming the file or URL) when it cannot be
    /// read or holds no usable key, so a misconfigured sign-in stops startup.
    pub async fn load(settings: OidcSettings) -> Result<Self, JwksError> {
        let http = match &settings.jwks {
            JwksSource::Url(_) => Some(
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| JwksError::Fetch {
                        url: settings.jwks.to_string(),
                        message: e.to_string(),
                    })?,
            ),
            JwksSource::File(_) => None,
        };
        let keys = read_keys(&settings.jwks, http.as_ref()).await?;
        tracing::info!(issuer = %settings.issuer, jwks = %settings.jwks, keys = keys.len(), "OIDC sign-in enabled");
        Ok(Self {
            settings,
            keys: RwLock::new(Arc::new(keys)),
            loaded_at: tokio::sync::Mutex::new(Instant::now()),
            http,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    fn lookup(&self, kid: &str) -> Option<SigningKey> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// The key named `kid`, reloading the key set once (rate-limited) when
    /// it is unknown.
    async fn key(&self, kid: &str) -> Result<SigningKey, TokenError> {
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        let mut loaded_at = self.loaded_at.lock().await;
        // Another request may have reloaded while this one waited.
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        if loaded_at.elapsed() >= Duration::from_secs(self.settings.jwks_refresh_secs) {
            *loaded_at = Instant::now();
            match read_keys(&self.settings.jwks, self.http.as_ref()).await {
                Ok(keys) => {
                    tracing::info!(jwks = %self.settings.jwks, keys = keys.len(), "JWKS reloaded for an unknown kid");
                    *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
                }
                Err(e) => tracing::warn!(error = %e, "JWKS reload failed; keeping the keys loaded before"),
            }
        }
        self.lookup(kid).ok_or(TokenError::UnknownKid)
    }

    /// Checks a token; the principal its claims describe.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let header = token_header(token)?;
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            _ => return Err(TokenError::Algorithm),
        };
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or(TokenError::NoKid)?;
        let key = self.key(kid).await?;
        if key.alg != alg {
            // An RSA key for an ES256 token, or the reverse.
            return Err(TokenError::Algorithm);
        }
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[&self.settings.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = self.settings.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::Algorithm,
            ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
            _ => TokenError::Malformed,
        })?;
        self.principal(&data.claims)
    }

    /// The principal the claims describe.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, TokenError> {
        let s = &self.settings;
        let named = |c: &str| claim(claims, c).and_then(Value::as_str).filter(|u| !u.is_empty());
        let user = named(&s.user_claim)
            .or_else(|| named("sub"))
            .ok_or_else(|| TokenError::MissingClaim("sub".to_owned()))?;
        let strings = |name: &str| -> Result<Vec<String>, TokenError> {
            match claim(claims, name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(g)) => Ok(vec![g.clone()]),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| TokenError::BadClaim(name.to_owned())),
                Some(_) => Err(TokenError::BadClaim(name.to_owned())),
            }
        };
        let groups = strings(&s.groups_claim)?;
        // The highest role named; none (or only unknown values) = reader.
        let role = strings(&s.role_claim)?
            .iter()
            .filter_map(|r| AccessRole::parse(r))
            .max()
            .unwrap_or(AccessRole::Reader);
        Ok(Principal {
            user: user.to_owned(),
            groups,
            role,
        })
    }
}

/// A claim by exact name, else by a dotted path into nested objects (names
/// such as `https://example.com/groups` contain dots themselves).
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

/// The token's decoded header (read before any key is chosen).
fn token_header(token: &str) -> Result<Map<String, Value>, TokenError> {
    let first = token.split('.').next().ok_or(TokenError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Reads and parses the key set.
async fn read_keys(source: &JwksSource, http: Option<&reqwest::Client>) -> Result<KeyMap, JwksError> {
    let bytes = match source {
        JwksSource::File(path) => tokio::fs::read(path).await.map_err(|e| JwksError::Read {
            path: path.clone(),
            source: e,
        })?,
        JwksSource::Url(url) => {
            let fetch = |message: String| JwksError::Fetch {
                url: url.clone(),
                message,
            };
            let client = http.ok_or_else(|| fetch("no HTTP client".to_owned()))?;
            let resp = client.get(url).send().await.map_err(|e| fetch(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(fetch(format!("HTTP {}", resp.status())));
            }
            let body = resp.bytes().await.map_err(|e| fetch(e.to_string()))?;
            body.to_vec()
        }
    };
    parse_jwks(&bytes, &source.to_string())
}

/// The usable signing keys of a JWKS by kid: RSA (RS256) and EC P-256
/// (ES256) keys meant for signatures; anything else is skipped.
fn parse_jwks(bytes: &[u8], from: &str) -> Result<KeyMap, JwksError> {
    let parse = |message: String| JwksError::Parse {
        from: from.to_owned(),
        message,
    };
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(parse(format!("larger than {MAX_JWKS_BYTES} bytes")));
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| parse(e.to_string()))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| parse("no \"keys\" array".to_owned()))?;
    let mut keys = KeyMap::new();
    for entry in entries {
        // One key of an unknown kind must not hide the others.
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            tracing::debug!(from, "JWKS entry skipped: not a key this library reads");
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone().filter(|k| !k.is_empty()) else {
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let (alg, key_alg) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, KeyAlgorithm::ES256)
            }
            _ => continue,
        };
        if jwk.common.key_algorithm.is_some_and(|a| a != key_alg) {
            continue;
        }
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => {
                keys.insert(kid, SigningKey { key, alg });
            }
            Err(e) => tracing::warn!(from, kid, error = %e, "JWKS key skipped: unreadable"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoKeys { from: from.to_owned() });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        // alg none: empty signature, still a JWT (and then refused).
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."));
        assert!(!looks_like_jwt("dk_0190_abc"));
        assert!(!looks_like_jwt("sk-placeholder"));
        assert!(!looks_like_jwt("unused"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a b.c.d"));
    }

    #[test]
    fn claims_by_name_or_dotted_path() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "https://example.com/groups": ["x"],
            "realm_access": {"roles": ["editor"]},
        }))
        .expect("map");
        assert_eq!(
            claim(&claims, "https://example.com/groups"),
            Some(&serde_json::json!(["x"]))
        );
        assert_eq!(
            claim(&claims, "realm_access.roles"),
            Some(&serde_json::json!(["editor"]))
        );
        assert_eq!(claim(&claims, "realm_access.missing"), None);
    }

    #[test]
    fn jwks_keeps_only_asymmetric_signing_keys() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "rs", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "rs512", "alg": "RS512", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AQAB"},
            {"kty": "weird", "kid": "w"},
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes(), "test").expect("one key");
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["rs"]);
        let none = serde_json::json!({"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]});
        assert!(matches!(
            parse_jwks(none.to_string().as_bytes(), "test"),
            Err(JwksError::NoKeys { .. })
        ));
        assert!(matches!(parse_jwks(b"[]", "test"), Err(JwksError::Parse { .. })));
    }
}
