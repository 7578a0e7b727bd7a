//! HS256 JWTs with the payload `{"Allow":[...]}` and no expiry, like Lotus (reference §6.2),
//! and what we add behind the same wire: a token minted for one worker also names it
//! (`"Worker"`, a claim Lotus's decoder ignores), so that the miner can hold that worker to its
//! own storage paths and calls; and a secret that can be replaced while the daemon runs.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

/// Permission levels, each including the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Sign,
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 4] = [Permission::Read, Permission::Write, Permission::Sign, Permission::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Sign => "sign",
            Permission::Admin => "admin",
        }
    }

    /// `--perm sign` grants read, write and sign.
    pub fn with_lower(self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|p| *p <= self).collect()
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown permission {0:?}: expected one of read, write, sign, admin")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownPermission(s.to_string()))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "Allow")]
    allow: Vec<String>,
    /// Ours: the worker the token was minted for (absent on the operator's tokens).
    #[serde(rename = "Worker", default, skip_serializing_if = "Option::is_none")]
    worker: Option<String>,
}

/// Who is calling: the permissions a token grants, and the worker it was minted for, if any.
/// A token without a worker is the operator's (or a Lotus node's): it may do whatever its
/// permissions allow, as in Lotus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub perms: Vec<Permission>,
    pub worker: Option<String>,
    /// The request carried no token: read methods answer it, without what only a cluster
    /// member needs to see (internal URLs, sector logs).
    pub anonymous: bool,
}

impl Caller {
    /// A request without a token: read access, as in Lotus.
    pub fn anonymous() -> Caller {
        Caller { perms: vec![Permission::Read], worker: None, anonymous: true }
    }

    /// The operator's token (or a Lotus node's) granting `perms`.
    pub fn operator(perms: Vec<Permission>) -> Caller {
        Caller { perms, worker: None, anonymous: false }
    }

    /// A token granting `perms` to the worker `worker` names.
    pub fn worker(perms: Vec<Permission>, worker: Option<String>) -> Caller {
        Caller { perms, worker, anonymous: false }
    }

    pub fn has(&self, p: Permission) -> bool {
        self.perms.contains(&p)
    }
}

/// The worker a token names, read without checking its signature: only for a token whose
/// signature was checked (by the miner's `AuthVerify`), or to learn a node's own identity from
/// its own token.
pub fn token_worker(token: &str) -> Option<String> {
    serde_json::from_slice::<Claims>(&token_part(token.split('.').nth(1)?)?).ok()?.worker
}

/// One part of a JWT, decoded from base64url (its padding, if any, ignored).
fn token_part(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

/// What a node without the secret can check of a token before asking the miner about it: a
/// JWT as Lotus mints them, an HS256 header and claims holding an `Allow` list of known
/// permissions. A token failing this is refused on the spot, costing the miner nothing.
pub fn plausible_token(token: &str) -> Result<(), String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a JWT (three parts joined by '.')".into());
    };
    let json = |part: &str, what: &str| {
        let bytes = token_part(part).ok_or_else(|| format!("the token's {what} is not base64url"))?;
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|_| format!("the token's {what} is not JSON"))
    };
    let alg = json(header, "header")?.get("alg").and_then(|a| a.as_str()).map(str::to_string);
    if alg.as_deref() != Some("HS256") {
        return Err(format!("the token is signed with {alg:?}, not HS256 as the miner signs"));
    }
    let claims: Claims =
        serde_json::from_value(json(payload, "payload")?).map_err(|_| "the token's claims have no Allow list")?;
    for p in &claims.allow {
        if p.parse::<Permission>().is_err() {
            return Err(format!("the token allows {p:?}, which is no permission"));
        }
    }
    Ok(())
}

/// Whether `name` can be a worker's identity in a token: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_worker_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("worker name {name:?} must be 1 to 64 characters long"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("worker name {name:?} has {c:?}: use letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

/// A bearer token shared by everything on a node that calls out with it (the miner client, the
/// file fetcher, the PoSt reader): clones share it, so a rotated token reaches all of them.
#[derive(Clone, Default)]
pub struct SharedToken(Arc<RwLock<String>>);

impl SharedToken {
    pub fn new(token: impl Into<String>) -> Self {
        SharedToken(Arc::new(RwLock::new(token.into())))
    }

    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, token: impl Into<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = token.into();
    }
}

impl From<String> for SharedToken {
    fn from(t: String) -> Self {
        SharedToken::new(t)
    }
}

impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedToken(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is not a valid JWT signed by this miner ({0}); create a new one with `lotus-miner auth create-token --perm <perm>`")]
    Invalid(String),
    #[error("the JWT secret in the keystore is malformed: {0}")]
    BadSecret(String),
}

/// The 32-byte HMAC key (`auth-jwt-private` in the keystore). Clones share the key, so
/// [`JwtSecret::replace`] (`lotus-miner auth rotate`) reaches every part of a daemon that
/// checks or mints tokens.
#[derive(Clone)]
pub struct JwtSecret(Arc<RwLock<Vec<u8>>>);

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

/// The keystore entry, `{"Type":"jwt-hmac-secret","PrivateKey":<base64>}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyInfo {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "PrivateKey")]
    pub private_key: String,
}

impl JwtSecret {
    pub fn generate() -> Self {
        let mut k = vec![0u8; 32];
        rand::fill(&mut k[..]);
        JwtSecret(Arc::new(RwLock::new(k)))
    }

    /// The key, read in place (every request's check passes here: no copy of it is made).
    fn key(&self) -> std::sync::RwLockReadGuard<'_, Vec<u8>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Take `other`'s key: every token signed with the old one is refused from now on.
    pub fn replace(&self, other: &JwtSecret) {
        let k = other.key().clone();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = k;
    }

    pub fn to_key_info(&self) -> KeyInfo {
        KeyInfo {
            kind: "jwt-hmac-secret".into(),
            private_key: base64::engine::general_purpose::STANDARD.encode(&*self.key()),
        }
    }

    pub fn from_key_info(ki: &KeyInfo) -> Result<Self, AuthError> {
        if ki.kind != "jwt-hmac-secret" {
            return Err(AuthError::BadSecret(format!("key type {:?}, expected \"jwt-hmac-secret\"", ki.kind)));
        }
        let k = base64::engine::general_purpose::STANDARD
            .decode(&ki.private_key)
            .map_err(|e| AuthError::BadSecret(format!("PrivateKey is not base64: {e}")))?;
        if k.is_empty() {
            return Err(AuthError::BadSecret("PrivateKey is empty".into()));
        }
        Ok(JwtSecret(Arc::new(RwLock::new(k))))
    }

    /// A token granting exactly `perms`.
    pub fn create_token(&self, perms: &[Permission]) -> String {
        self.sign(perms, None)
    }

    /// A token granting `perms` to one worker: the miner holds its bearer to that worker's
    /// storage paths and calls, and refuses it the operator's methods.
    pub fn create_worker_token(&self, perms: &[Permission], worker: &str) -> String {
        self.sign(perms, Some(worker.to_string()))
    }

    fn sign(&self, perms: &[Permission], worker: Option<String>) -> String {
        let claims = Claims { allow: perms.iter().map(|p| p.as_str().to_string()).collect(), worker };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&self.key()))
            .expect("HS256 encoding cannot fail")
    }

    /// The permissions a token grants. Unknown permission strings are ignored.
    pub fn verify(&self, token: &str) -> Result<Vec<Permission>, AuthError> {
        Ok(self.verify_caller(token)?.perms)
    }

    /// Who a token speaks for: its permissions and the worker it names.
    pub fn verify_caller(&self, token: &str) -> Result<Caller, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&self.key()), &v)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Caller::worker(data.claims.allow.iter().filter_map(|s| s.parse().ok()).collect(), data.claims.worker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_forgery() {
        let s = JwtSecret::generate();
        let t = s.create_token(&Permission::Sign.with_lower());
        assert_eq!(s.verify(&t).unwrap(), vec![Permission::Read, Permission::Write, Permission::Sign]);
        let other = JwtSecret::generate();
        assert!(other.verify(&t).is_err(), "a token signed with another secret is refused");
        assert!(s.verify("garbage").is_err());
        let mut forged = t.clone();
        forged.pop();
        assert!(s.verify(&forged).is_err());
        // The payload is exactly {"Allow":[...]} with no exp, like Lotus.
        let payload = t.split('.').nth(1).unwrap();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        assert_eq!(String::from_utf8(json).unwrap(), r#"{"Allow":["read","write","sign"]}"#);
    }

    #[test]
    fn worker_tokens_name_their_worker_and_rotation_refuses_old_tokens() {
        let s = JwtSecret::generate();
        let t = s.create_worker_token(&Permission::Admin.with_lower(), "pc1-box");
        let c = s.verify_caller(&t).unwrap();
        assert_eq!(c.worker.as_deref(), Some("pc1-box"));
        assert!(c.has(Permission::Admin));
        assert_eq!(token_worker(&t).as_deref(), Some("pc1-box"));
        assert_eq!(s.verify_caller(&s.create_token(&[Permission::Read])).unwrap().worker, None);
        assert_eq!(token_worker("a.b.c"), None);
        // Lotus's decoder reads only "Allow": the extra claim sits beside it.
        let payload = t.split('.').nth(1).unwrap();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        assert_eq!(String::from_utf8(json).unwrap(), r#"{"Allow":["read","write","sign","admin"],"Worker":"pc1-box"}"#);
        // Every clone sees a replaced key.
        let holder = s.clone();
        s.replace(&JwtSecret::generate());
        assert!(holder.verify(&t).is_err(), "a token of the old secret is refused after rotation");
        assert!(holder.verify(&s.create_token(&[Permission::Read])).is_ok());
        assert!(valid_worker_name("gpu-01.rack_2").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(valid_worker_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_info_round_trip() {
        let s = JwtSecret::generate();
        let ki = s.to_key_info();
        let back = JwtSecret::from_key_info(&ki).unwrap();
        let t = s.create_token(&[Permission::Admin]);
        assert_eq!(back.verify(&t).unwrap(), vec![Permission::Admin]);
        assert!(JwtSecret::from_key_info(&KeyInfo { kind: "x".into(), private_key: "AA==".into() }).is_err());
    }
}
