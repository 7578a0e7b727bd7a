//! HS256 JWTs with the payload `{"Allow":[...]}` and no expiry, like Lotus (reference §6.2).

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

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
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is not a valid JWT signed by this miner ({0}); create a new one with `lotus-miner auth create-token --perm <perm>`")]
    Invalid(String),
    #[error("the JWT secret in the keystore is malformed: {0}")]
    BadSecret(String),
}

/// The 32-byte HMAC key (`auth-jwt-private` in the keystore).
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

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
        JwtSecret(k)
    }

    pub fn to_key_info(&self) -> KeyInfo {
        KeyInfo {
            kind: "jwt-hmac-secret".into(),
            private_key: base64::engine::general_purpose::STANDARD.encode(&self.0),
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
        Ok(JwtSecret(k))
    }

    /// A token granting exactly `perms`.
    pub fn create_token(&self, perms: &[Permission]) -> String {
        let claims = Claims { allow: perms.iter().map(|p| p.as_str().to_string()).collect() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&self.0))
            .expect("HS256 encoding cannot fail")
    }

    /// The permissions a token grants. Unknown permission strings are ignored.
    pub fn verify(&self, token: &str) -> Result<Vec<Permission>, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&self.0), &v)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(data.claims.allow.iter().filter_map(|s| s.parse().ok()).collect())
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
    fn key_info_round_trip() {
        let s = JwtSecret::generate();
        let ki = s.to_key_info();
        let back = JwtSecret::from_key_info(&ki).unwrap();
        let t = s.create_token(&[Permission::Admin]);
        assert_eq!(back.verify(&t).unwrap(), vec![Permission::Admin]);
        assert!(JwtSecret::from_key_info(&KeyInfo { kind: "x".into(), private_key: "AA==".into() }).is_err());
    }
}
