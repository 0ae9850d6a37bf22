//! Passwords (argon2id, PHC strings) and session tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash};

use crate::CtiError;

/// Hashes a password for the config (`password_hash = "$argon2id$..."`).
pub fn hash_password(password: &str) -> Result<String, CtiError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt[..]);
    let salt = SaltString::encode_b64(&salt).map_err(|e| CtiError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CtiError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A logged-in user's session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub user: String,
    pub expires: Instant,
    /// Wall-clock expiry for the client (Unix ms).
    pub expires_at_ms: i64,
}

/// Live tokens. Small and touched only at login/resume and per message (a map lookup).
pub(crate) struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<String, Session>>,
}

/// Bound on live sessions (each login makes one; expired ones are purged).
const MAX_SESSIONS: usize = 100_000;

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A new token for `user`, or `None` when the table is full of live sessions.
    pub fn create(&self, user: &str) -> Option<(String, Session)> {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let session = Session {
            user: user.to_string(),
            expires: now + self.ttl,
            expires_at_ms: now_ms() + self.ttl.as_millis() as i64,
        };
        let mut map = self.map.lock().ok()?;
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                return None;
            }
        }
        map.insert(token.clone(), session.clone());
        Some((token, session))
    }

    /// The session of a token that has not expired.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut map = self.map.lock().ok()?;
        match map.get(token) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, token: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(token);
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
