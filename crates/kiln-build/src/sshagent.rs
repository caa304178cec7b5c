//! The ssh-agent protocol (draft-miller-ssh-agent), as much of it as a build
//! needs: listing keys and signing with them. kiln answers it itself for
//! `--ssh ID=KEYFILE`, and passes only these two requests on to a forwarded
//! agent, as BuildKit's read-only agent does: a RUN step can use the
//! caller's keys but cannot add, remove or lock any.
//!
//! Messages here are payloads (type byte first) without their `uint32`
//! length prefix; [`frame`] adds it.

use signature::Signer;
use ssh_key::private::{Ed25519Keypair, KeypairData};

pub const FAILURE: u8 = 5;
pub const REQUEST_IDENTITIES: u8 = 11;
pub const IDENTITIES_ANSWER: u8 = 12;
pub const SIGN_REQUEST: u8 = 13;
pub const SIGN_RESPONSE: u8 = 14;
/// OpenSSH's agent refuses longer messages too.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// An unencrypted ed25519 private key that kiln's agent signs with.
///
/// Only ed25519: the code of a RUN step may ask for any number of
/// signatures and time them, and ed25519's signing is constant-time where
/// the pure-Rust RSA crate's is not (RUSTSEC-2023-0071). RSA keys are used
/// through a real ssh-agent, whose socket kiln forwards.
pub struct AgentKey {
    /// The public key in wire form, as identities answers and sign
    /// requests carry it.
    blob: Vec<u8>,
    comment: String,
    pair: Ed25519Keypair,
}

// Never prints the private key.
impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentKey(ed25519, {:?})", self.comment)
    }
}

impl AgentKey {
    /// Reads an OpenSSH private key file's text (what `ssh-keygen` writes).
    pub fn from_openssh(text: &[u8]) -> Result<AgentKey, String> {
        let key = ssh_key::PrivateKey::from_openssh(text).map_err(|e| {
            format!(
                "not an unencrypted OpenSSH private key of a type kiln's agent serves \
                     (ed25519): {e}; for others, add the key to an ssh-agent and give \
                     the agent's socket"
            )
        })?;
        if key.is_encrypted() {
            return Err(
                "the key is passphrase-protected and kiln cannot ask for the \
                 passphrase: add it to an ssh-agent and give the agent's socket"
                    .to_string(),
            );
        }
        let blob = key
            .public_key()
            .to_bytes()
            .map_err(|e| format!("encoding its public key: {e}"))?;
        let pair = match key.key_data() {
            KeypairData::Ed25519(pair) => pair.clone(),
            _ => {
                return Err(format!(
                    "{} keys are not served by kiln's agent (ed25519 keys are): \
                     add it to an ssh-agent (`ssh-add KEY`) and give the agent's socket",
                    key.algorithm()
                ));
            }
        };
        Ok(AgentKey {
            blob,
            comment: key.comment().to_string(),
            pair,
        })
    }

    /// The signature blob (`string algorithm, string signature`) of `data`.
    fn sign(&self, data: &[u8]) -> Option<Vec<u8>> {
        let sig: ssh_key::Signature = self.pair.try_sign(data).ok()?;
        let mut out = Vec::new();
        put_string(&mut out, b"ssh-ed25519");
        put_string(&mut out, sig.as_bytes());
        Some(out)
    }
}

/// The answer of kiln's own agent holding `keys` to the request `msg`.
/// Anything but listing and signing fails, as with a read-only agent.
pub fn answer(keys: &[AgentKey], msg: &[u8]) -> Vec<u8> {
    match msg.split_first() {
        Some((&REQUEST_IDENTITIES, [])) => {
            let mut out = vec![IDENTITIES_ANSWER];
            out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
            for key in keys {
                put_string(&mut out, &key.blob);
                put_string(&mut out, key.comment.as_bytes());
            }
            out
        }
        Some((&SIGN_REQUEST, rest)) => sign_response(keys, rest).unwrap_or_else(|| vec![FAILURE]),
        _ => vec![FAILURE],
    }
}

fn sign_response(keys: &[AgentKey], body: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader(body);
    let blob = r.string()?;
    let data = r.string()?;
    // The flags only choose RSA's hash; ed25519 has one way to sign.
    let _flags = r.u32()?;
    if !r.0.is_empty() {
        return None;
    }
    let key = keys.iter().find(|k| k.blob == blob)?;
    let signature = key.sign(data)?;
    let mut out = vec![SIGN_RESPONSE];
    put_string(&mut out, &signature);
    Some(out)
}

/// Whether a request may reach a forwarded agent: only listing and signing.
pub fn forwardable(msg: &[u8]) -> bool {
    matches!(msg.first(), Some(&(REQUEST_IDENTITIES | SIGN_REQUEST)))
}

/// `msg` with its length prefix.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + msg.len());
    put_string(&mut out, msg);
    out
}

/// The length a message's prefix announces, when the agent would accept it.
pub fn message_len(prefix: [u8; 4]) -> Option<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    (1..=MAX_MESSAGE).contains(&len).then_some(len)
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(s)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use signature::Verifier;

    // Generated once with `ssh-keygen -t ed25519 -N '' -C test@kiln`: a test key.
    pub(crate) const ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCsRPfucc7omZprlhiEN28SFT/K8UXeu8BItKCWorXKKAAAAJATkpO8E5KT
vAAAAAtzc2gtZWQyNTUxOQAAACCsRPfucc7omZprlhiEN28SFT/K8UXeu8BItKCWorXKKA
AAAEAa2de729CexNTXJn3k4S5AyIR2Y8r2bT1+CKMJ/I/clKxE9+5xzuiZmmuWGIQ3bxIV
P8rxRd67wEi0oJaitcooAAAACXRlc3RAa2lsbgECAwQ=
-----END OPENSSH PRIVATE KEY-----
";

    // `ssh-keygen -t ed25519 -N pw`.
    const ENCRYPTED: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABCWaUmUk7
WawB0xBFJvZZ6iAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIOoAAitVaPNgVk4z
5zP/taRKGgSecDaE2Cz+CeuTqQzHAAAAkL9g2xUyeRqEBZBwqozpiBEvQLFnWSoaVyUbGF
8jPcdp3qMg2u9jjjBkDY3/IsDFd2fCr5H6Tmjlg0fOXn4VsvAbAEHtBBnlP/zGl7frQ+8d
boTzySM1dp9opKSwMYCZEO5HN50VIqOuoI5m1MHq3WBl5+DMnJYjXxss5y3TJqVfrzKH1Y
Qdg3s3U4WfunzsBQ==
-----END OPENSSH PRIVATE KEY-----
";

    // `ssh-keygen -t rsa -b 2048 -N '' -C rsa@kiln`.
    const RSA: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAABFwAAAAdzc2gtcn
NhAAAAAwEAAQAAAQEAwF35i/OOuNgVh37WI0/Cq64tfp1GHD49alU6ZDo1qpC/y7GOy6LL
zstDrl/ba50rCVGABDaf6VBxvjazAhGjZm/fpiLqIAXdhJGUxxUxRf0wUF/k/hsHuEk9Sj
ZPll5Kft7MlwxTTaiDZTDrVZJAqcuHmh9Mi7JpvC7LplO3cAe+IRc/ON3C/hk3rWtWz97V
IbTJiLs2J4acSm9/oyrAEczPZhIbv7G7ogM9HiEfEMk5/0ppQIakWAQKav9N3v7y8jD1L9
0v22lhtPEch0NCVptljs79rWS21UNsrNTdWn/KdhW+t0M6aDC1SW3khfmLXkmUJPBesvDN
F4m1Rkd3YwAAA8CwKhetsCoXrQAAAAdzc2gtcnNhAAABAQDAXfmL84642BWHftYjT8Krri
1+nUYcPj1qVTpkOjWqkL/LsY7LosvOy0OuX9trnSsJUYAENp/pUHG+NrMCEaNmb9+mIuog
Bd2EkZTHFTFF/TBQX+T+Gwe4ST1KNk+WXkp+3syXDFNNqINlMOtVkkCpy4eaH0yLsmm8Ls
umU7dwB74hFz843cL+GTeta1bP3tUhtMmIuzYnhpxKb3+jKsARzM9mEhu/sbuiAz0eIR8Q
yTn/SmlAhqRYBApq/03e/vLyMPUv3S/baWG08RyHQ0JWm2WOzv2tZLbVQ2ys1N1af8p2Fb
63QzpoMLVJbeSF+YteSZQk8F6y8M0XibVGR3djAAAAAwEAAQAAAQAZ6w96WcB7CzIrZV14
uIBkHT2n94zAtWoU75LEektMxd/xk+THbxHCtQRTdDreDvkDcmWrK6j0CJCqrjgEKVg4rw
4VFlMxKVklSXAgOqy+31QpICJ8UiwCGmwVmaezfNTQrzglidWXewLpGWQ7zU7FEdUdYOYx
VEKGxk9OA62NfGFkIubwCGmNL+coUVnA1eDHA45jtHIsh+BUJJWtZVRHINyc3TrhRI7sW/
bf57D+KEPTAh+4j3EXLxbWoRcCRuWU+uFnu5acBeIY0HqNBGyWqDIN5z/UT3nFEgcwJGnX
2FkJisx1vYO8mgbfbF+cneolL/QWdMPsb4EBvSdDEpOhAAAAgGZSoDr9PYHJfXseYPEs/r
+04z5tYoqpWLD5JWThxZL2F5hCC+rvQxxBFOFjEUTDvVG3jhcSza9/8QQEbVrLrkpu2cps
TqpZFwiNIvgXHbuXRwnlxKEVjX3bQKVWqABVSKsh7O1yiujHeP7E1NJE+ibNl4Rw2DFKy+
m85a6gaMH2AAAAgQD4mruQYqYK8XSpSQgzjTzpJx/cPmUHahwes42gvSTZ2DmT4HVUK1+n
/u7oi58qaZh+GoZrUuAcCyQcbd4YNIc3Xv32bP3cJpyi+8kHsrBTe0XE5MQITkBMzaZlqB
grvUmwly2sJarjLByojVGBNBXqvEQxoOrB96gNtABvTEA3OwAAAIEAxhb2S6gjnEleNiJF
Rhp1zpztfGqq5qMlz/v67NC2s9LLT4jOXQxOXDTiQRfpqczJHehri4F58+aV4hw2GCuZ47
Qe6+YKOa7BUZOun3wth7rIW4tU1oluzjXj/hWBjOcT3WV+E9QpX9AeYttxtesnrcNqwxr8
51KF/rq9X0BPTfkAAAAIcnNhQGtpbG4BAgM=
-----END OPENSSH PRIVATE KEY-----
";

    // `ssh-keygen -t ecdsa -N ''`.
    const ECDSA: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQRREb02fGQ2md6qPpYCN3mhAzyTup0l
XOCtr7KdCsOaJxCKpEGmOP6cCIfJU4KH0eBWo5Vf2Oic2NxW+nsO8pgqAAAAoGCPpCBgj6
QgAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFERvTZ8ZDaZ3qo+
lgI3eaEDPJO6nSVc4K2vsp0Kw5onEIqkQaY4/pwIh8lTgofR4FajlV/Y6JzY3Fb6ew7ymC
oAAAAhAJxYgVebgNpgYrDckQCXx/shC6h+ZWNgd6NGi/jpS7WnAAAAB2VjQGtpbG4=
-----END OPENSSH PRIVATE KEY-----
";

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_string(&mut v, s);
        v
    }

    fn sign_request(blob: &[u8], data: &[u8], flags: u32) -> Vec<u8> {
        let mut msg = vec![SIGN_REQUEST];
        msg.extend(string(blob));
        msg.extend(string(data));
        msg.extend(flags.to_be_bytes());
        msg
    }

    /// (algorithm, signature) of a SIGN_RESPONSE.
    fn signature(resp: &[u8]) -> (String, Vec<u8>) {
        assert_eq!(resp[0], SIGN_RESPONSE, "{resp:?}");
        let mut r = Reader(&resp[1..]);
        let mut sig = Reader(r.string().unwrap());
        assert!(r.0.is_empty());
        let alg = String::from_utf8(sig.string().unwrap().to_vec()).unwrap();
        (alg, sig.string().unwrap().to_vec())
    }

    #[test]
    fn lists_and_signs_with_an_ed25519_key() {
        let key = AgentKey::from_openssh(ED25519.as_bytes()).unwrap();
        let public = ssh_key::PrivateKey::from_openssh(ED25519)
            .unwrap()
            .public_key()
            .clone();
        let keys = [key];
        let list = answer(&keys, &[REQUEST_IDENTITIES]);
        let mut expected = vec![IDENTITIES_ANSWER, 0, 0, 0, 1];
        expected.extend(string(&public.to_bytes().unwrap()));
        expected.extend(string(b"test@kiln"));
        assert_eq!(list, expected);

        let data = b"session id and userauth request";
        let resp = answer(&keys, &sign_request(&public.to_bytes().unwrap(), data, 0));
        let (alg, sig) = signature(&resp);
        assert_eq!(alg, "ssh-ed25519");
        let sig = ssh_key::Signature::new(ssh_key::Algorithm::Ed25519, sig).unwrap();
        public.key_data().verify(data, &sig).unwrap();
    }

    #[test]
    fn refuses_what_a_read_only_agent_refuses() {
        let keys = [AgentKey::from_openssh(ED25519.as_bytes()).unwrap()];
        // Unknown key, truncated or trailing bytes, add/remove/lock, empty.
        let other = [0u8; 51];
        for msg in [
            sign_request(&other, b"x", 0),
            sign_request(&keys[0].blob, b"x", 0)[..20].to_vec(),
            [sign_request(&keys[0].blob, b"x", 0), vec![0]].concat(),
            vec![17],
            vec![19],
            vec![22],
            vec![REQUEST_IDENTITIES, 0],
            vec![],
        ] {
            assert_eq!(answer(&keys, &msg), vec![FAILURE], "{msg:?}");
        }
        assert!(forwardable(&[REQUEST_IDENTITIES]));
        assert!(forwardable(&sign_request(b"k", b"d", 0)));
        for t in [17u8, 18, 19, 22, 23, 25, 27] {
            assert!(!forwardable(&[t]), "{t}");
        }
        assert!(!forwardable(&[]));
    }

    #[test]
    fn framing_bounds_lengths() {
        assert_eq!(frame(&[11]), vec![0, 0, 0, 1, 11]);
        assert_eq!(message_len([0, 0, 0, 1]), Some(1));
        assert_eq!(message_len([0, 0, 0, 0]), None);
        assert_eq!(message_len([0, 4, 0, 0]), Some(MAX_MESSAGE));
        assert_eq!(message_len([0, 4, 0, 1]), None);
    }

    #[test]
    fn unusable_keys_say_why() {
        let e = AgentKey::from_openssh(b"not a key").unwrap_err();
        assert!(e.contains("not an unencrypted OpenSSH private key"), "{e}");
        let e = AgentKey::from_openssh(ENCRYPTED.as_bytes()).unwrap_err();
        assert!(e.contains("passphrase-protected"), "{e}");
        // Without ssh-key's ecdsa support that file does not even parse.
        let e = AgentKey::from_openssh(ECDSA.as_bytes()).unwrap_err();
        assert!(e.contains("(ed25519)") && e.contains("ssh-agent"), "{e}");
        let e = AgentKey::from_openssh(RSA.as_bytes()).unwrap_err();
        assert!(
            e.contains("ssh-rsa keys are not served") && e.contains("ssh-add"),
            "{e}"
        );
    }
}
