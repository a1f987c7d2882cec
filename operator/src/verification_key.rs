//! The hub's secret for verification: which chunks are checked, and which frame of each, is
//! decided from it, so a member cannot compute before rendering which of its chunks will be
//! checked (DESIGN.md, "Trust"). Kept across operator restarts (the chart keeps it in a Secret),
//! so the sample of a job does not move.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;

/// Bytes of a secret the operator generates when it is given none.
const GENERATED_BYTES: usize = 32;

/// The secret, shared by every reconcile.
#[derive(Clone)]
pub struct VerificationKey(Arc<[u8]>);

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationKey(..)")
    }
}

/// Why the key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("read the verification secret {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file holds too little to be a secret.
    #[error("the verification secret {path} holds {len} bytes; give it at least 16 random bytes")]
    TooShort { path: String, len: usize },
}

impl VerificationKey {
    /// A key of these bytes.
    pub fn new(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }

    /// The key in a file (trailing whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        let trimmed = bytes.trim_ascii_end();
        if trimmed.len() < 16 {
            return Err(KeyError::TooShort { path: shown, len: trimmed.len() });
        }
        Ok(Self::new(trimmed))
    }

    /// A fresh random key, for a hub given none (the sample then moves when the operator restarts).
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; GENERATED_BYTES];
        let read = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
        read.map_err(|source| KeyError::Read { path: "/dev/urandom".into(), source })?;
        Ok(Self::new(&bytes))
    }

    /// A number in `0..modulus` drawn from the key and `parts`: the same for the same parts, not
    /// computable without the key.
    pub fn draw(&self, parts: &[&[u8]], modulus: u64) -> u64 {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        let digest = mac.finalize().into_bytes();
        let word = u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"));
        word % modulus.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_stable_for_a_key_and_differ_between_keys() {
        let a = VerificationKey::new(b"0123456789abcdef");
        let b = VerificationKey::new(b"fedcba9876543210");
        let draws = |k: &VerificationKey| {
            (0..64u64).map(|i| k.draw(&[b"x", &i.to_le_bytes()], 100)).collect::<Vec<_>>()
        };
        assert_eq!(draws(&a), draws(&a));
        assert_ne!(draws(&a), draws(&b), "another hub's secret, another sample");
        assert!(draws(&a).iter().all(|d| *d < 100));
        assert_eq!(a.draw(&[b"x"], 0), 0, "a modulus of 0 draws 0");
    }

    #[test]
    fn a_short_or_missing_secret_file_is_refused_with_what_to_do() {
        let dir = std::env::temp_dir().join(format!("pictor-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "abc\n").unwrap();
        assert!(
            VerificationKey::from_file(&short).unwrap_err().to_string().contains("at least 16 random bytes")
        );
        assert!(VerificationKey::from_file(&dir.join("missing")).is_err());
        let good = dir.join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        assert!(VerificationKey::from_file(&good).is_ok());
        assert_eq!(format!("{:?}", VerificationKey::generate().unwrap()), "VerificationKey(..)");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
