//! Build-cache keys. A step's key is a hash over its parent's key, the
//! instruction after expansion and every input it reads (context digests,
//! build arguments, mounts), so a change anywhere above a step changes its
//! key and everything below it. Pure.

use kiln_oci::{Digest, Hasher};

/// Bumped when the meaning of a cached result changes.
const VERSION: &str = "kiln-build-cache-v1";

pub struct KeyBuilder {
    hasher: Hasher,
}

impl KeyBuilder {
    pub fn new(kind: &str) -> KeyBuilder {
        let mut k = KeyBuilder {
            hasher: Hasher::Sha256(Default::default()),
        };
        k.field("version", VERSION);
        k.field("kind", kind);
        k
    }

    /// Adds a named field; names and values are length-prefixed so that no
    /// two different field lists hash alike.
    pub fn field(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        for part in [name.as_bytes(), value] {
            self.hasher.update(&(part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
        self
    }

    pub fn finish(self) -> Digest {
        self.hasher.finish()
    }
}

/// The key of a stage's starting point: an image by manifest digest, or
/// scratch for a platform.
pub fn base_key(base: &str, platform: &str) -> Digest {
    let mut k = KeyBuilder::new("base");
    k.field("base", base).field("platform", platform);
    k.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unambiguous() {
        let mut a = KeyBuilder::new("run");
        a.field("cmd", "ab").field("env", "c");
        let mut b = KeyBuilder::new("run");
        b.field("cmd", "a").field("env", "bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn same_inputs_same_key() {
        assert_eq!(
            base_key("scratch", "linux/amd64"),
            base_key("scratch", "linux/amd64")
        );
        assert_ne!(
            base_key("scratch", "linux/amd64"),
            base_key("scratch", "linux/arm64")
        );
    }
}
