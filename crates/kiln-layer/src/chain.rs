//! OCI chain IDs: the identity of a stack of layers, which is what an
//! unpacked layer directory depends on (its content only makes sense on top
//! of its parents).

use kiln_oci::Digest;

/// `ChainID(L0) = DiffID(L0)`, `ChainID(L0|…|Ln) =
/// sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln))` (OCI image spec, config.md).
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// The chain ID of every prefix of `diff_ids`, bottom layer first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = chain_id(out.last(), d);
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        s.parse().unwrap()
    }

    #[test]
    fn matches_the_spec_definition() {
        let a = d("sha256:a9561eb1b190625c9adb5a9513e72c4dedafc1cb2d4c5236c9a6957ec7dfd5a9");
        let b = d("sha256:3b5b9aa5b4aa54e69fc6adafe9e4ecebf93a8b0f1fc16e7a1e9d8ad1eb1f6d27");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let expected = Digest::sha256_of(format!("{a} {b}").as_bytes());
        assert_eq!(ids[1], expected);
        assert_eq!(chain_id(Some(&a), &b), expected);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn known_value() {
        // sha256("sha256:<64×a> sha256:<64×b>") computed independently with
        // `printf %s ... | sha256sum`.
        let a = d(&format!("sha256:{}", "a".repeat(64)));
        let b = d(&format!("sha256:{}", "b".repeat(64)));
        assert_eq!(
            chain_id(Some(&a), &b).to_string(),
            "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
        );
    }
}
