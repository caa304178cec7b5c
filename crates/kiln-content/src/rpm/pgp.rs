//! The key id of an OpenPGP signature packet (RFC 4880 / RFC 9580), as
//! rpm's `%{RSAHEADER:pgpsig}` shows it: 16 lower-case hex digits.
//!
//! Only the packet framing and the subpackets are read: v3 signatures carry
//! the key id in a fixed field; v4 and v6 signatures in an issuer (16) or
//! issuer fingerprint (33) subpacket. Nothing is verified: verification
//! needs the key, and is dnf's job at install time.

const TAG_SIGNATURE: u8 = 2;
const SUB_ISSUER: u8 = 16;
const SUB_ISSUER_FPR: u8 = 33;

/// The issuer key id of the first packet of `bytes`, which must be a
/// signature packet.
pub(crate) fn signature_key_id(bytes: &[u8]) -> Result<String, String> {
    let body = packet_body(bytes)?;
    let id = match body.first() {
        Some(3) => body
            .get(7..15)
            .ok_or("truncated version 3 signature")?
            .try_into()
            .map_err(|_| "truncated version 3 signature")?,
        Some(4) => subpacket_key_id(body, 2)?,
        Some(5 | 6) => subpacket_key_id(body, 4)?,
        Some(v) => return Err(format!("signature version {v} not supported")),
        None => return Err("empty signature packet".into()),
    };
    Ok(hex(&id))
}

/// The body of the first packet, checked to be a signature.
fn packet_body(bytes: &[u8]) -> Result<&[u8], String> {
    let &ctb = bytes.first().ok_or("empty signature")?;
    if ctb & 0x80 == 0 {
        return Err(format!("not an OpenPGP packet (first byte {ctb:#04x})"));
    }
    let (tag, len, start): (u8, usize, usize) = if ctb & 0x40 != 0 {
        let tag = ctb & 0x3f;
        let &o1 = bytes.get(1).ok_or("truncated packet header")?;
        match o1 {
            0..=191 => (tag, o1 as usize, 2),
            192..=223 => {
                let &o2 = bytes.get(2).ok_or("truncated packet header")?;
                (tag, ((o1 as usize - 192) << 8) + o2 as usize + 192, 3)
            }
            255 => (
                tag,
                be(bytes.get(2..6).ok_or("truncated packet header")?),
                6,
            ),
            _ => return Err("partial-length signature packets are not supported".into()),
        }
    } else {
        let tag = (ctb >> 2) & 0x0f;
        match ctb & 0x03 {
            0 => (
                tag,
                *bytes.get(1).ok_or("truncated packet header")? as usize,
                2,
            ),
            1 => (
                tag,
                be(bytes.get(1..3).ok_or("truncated packet header")?),
                3,
            ),
            2 => (
                tag,
                be(bytes.get(1..5).ok_or("truncated packet header")?),
                5,
            ),
            _ => (tag, bytes.len().saturating_sub(1), 1),
        }
    };
    if tag != TAG_SIGNATURE {
        return Err(format!("OpenPGP packet of type {tag}, not a signature"));
    }
    start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| format!("signature packet of {len} bytes truncated"))
}

/// Searches the hashed, then the unhashed subpacket area of a v4 (2-byte
/// area lengths) or v6 (4-byte) signature body.
fn subpacket_key_id(body: &[u8], len_size: usize) -> Result<[u8; 8], String> {
    let mut at = 4; // version, type, public key algorithm, hash algorithm
    let mut from_fpr = None;
    for _area in 0..2 {
        let len = be(body.get(at..at + len_size).ok_or("truncated signature")?);
        at += len_size;
        let area = body
            .get(at..at.saturating_add(len))
            .ok_or("truncated signature subpackets")?;
        at += len;
        for (kind, data) in subpackets(area)? {
            match kind {
                SUB_ISSUER if data.len() == 8 => {
                    let mut id = [0; 8];
                    id.copy_from_slice(data);
                    return Ok(id);
                }
                SUB_ISSUER_FPR if from_fpr.is_none() => from_fpr = fingerprint_key_id(data),
                _ => {}
            }
        }
    }
    from_fpr.ok_or_else(|| "signature names no issuer".into())
}

/// A v4 key id is the fingerprint's last 8 bytes; a v5/v6 key id its first.
fn fingerprint_key_id(data: &[u8]) -> Option<[u8; 8]> {
    let (&version, fpr) = data.split_first()?;
    let id = match (version, fpr.len()) {
        (4, 20) => &fpr[12..],
        (5 | 6, 32) => &fpr[..8],
        _ => return None,
    };
    id.try_into().ok()
}

fn subpackets(mut area: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    while let Some(&o1) = area.first() {
        let (len, hdr): (usize, usize) = match o1 {
            0..=191 => (o1 as usize, 1),
            192..=254 => {
                let &o2 = area.get(1).ok_or("truncated subpacket")?;
                (((o1 as usize - 192) << 8) + o2 as usize + 192, 2)
            }
            255 => (be(area.get(1..5).ok_or("truncated subpacket")?), 5),
        };
        let packet = area
            .get(hdr..hdr.saturating_add(len))
            .ok_or("truncated subpacket")?;
        let (&kind, data) = packet.split_first().ok_or("empty subpacket")?;
        // The top bit only says "critical".
        out.push((kind & 0x7f, data));
        area = &area[hdr + len..];
    }
    Ok(out)
}

fn be(b: &[u8]) -> usize {
    b.iter().fold(0usize, |n, &x| (n << 8) | x as usize)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `gpg --detach-sign` (GnuPG 2.2, ed25519 key 796412D903102DB6):
    /// old-format header, issuer fingerprint hashed, issuer unhashed.
    const GPG_SIG: &str = "887504001608001d16210402bd449458784cf8b182d42b796412d903102db605026b04561e000a0910796412d903102db65c2501008518d88a11b9b2b390e3e15c3762500b598b94675636d832060bf4aba88921b900fe3276f4a514996bf136e1370f3309a2094e9e251c08870cc7f2fb0e4edb393b04";

    #[test]
    fn gnupg_v4_signature() {
        let sig = unhex(GPG_SIG);
        assert_eq!(signature_key_id(&sig).unwrap(), "796412d903102db6");
    }

    #[test]
    fn issuer_fingerprint_alone_and_new_format_header() {
        // The same signature with the unhashed issuer subpacket removed, in
        // a new-format packet: the key id comes from the v4 fingerprint.
        let sig = unhex(GPG_SIG);
        let body = &sig[2..];
        let hashed_len = u16::from_be_bytes([body[4], body[5]]) as usize;
        let mut stripped = body[..6 + hashed_len].to_vec();
        stripped.extend_from_slice(&[0, 0]); // empty unhashed area
        stripped.extend_from_slice(&body[6 + hashed_len + 2 + 10..]);
        let mut packet = vec![0xc2, stripped.len() as u8];
        packet.extend_from_slice(&stripped);
        assert_eq!(signature_key_id(&packet).unwrap(), "796412d903102db6");
    }

    #[test]
    fn v3_and_v6_signatures() {
        let mut v3 = vec![0x88, 17, 3, 5, 0, 0, 0, 0, 0];
        v3.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
        v3.extend_from_slice(&[1, 8]);
        assert_eq!(signature_key_id(&v3).unwrap(), "deadbeef00010203");

        let mut fpr = vec![6];
        fpr.extend((0u8..32).collect::<Vec<_>>());
        let mut hashed = vec![fpr.len() as u8 + 1, 0x80 | SUB_ISSUER_FPR];
        hashed.extend_from_slice(&fpr);
        let mut body = vec![6, 0, 27, 10];
        body.extend_from_slice(&(hashed.len() as u32).to_be_bytes());
        body.extend_from_slice(&hashed);
        body.extend_from_slice(&0u32.to_be_bytes());
        let mut packet = vec![0xc2, body.len() as u8];
        packet.extend_from_slice(&body);
        assert_eq!(signature_key_id(&packet).unwrap(), "0001020304050607");
    }

    #[test]
    fn rejects_garbage() {
        assert!(signature_key_id(&[]).is_err());
        assert!(signature_key_id(&[0x00, 1, 2]).is_err());
        // A public key packet (tag 6), not a signature.
        assert!(signature_key_id(&[0x98, 1, 4]).is_err());
        // Truncated.
        let sig = unhex(GPG_SIG);
        assert!(signature_key_id(&sig[..40]).is_err());
        // Subpacket length running past its area.
        assert!(signature_key_id(&[0x88, 8, 4, 0, 1, 8, 0, 2, 50, 16]).is_err());
        // No issuer at all.
        assert!(signature_key_id(&[0x88, 8, 4, 0, 1, 8, 0, 0, 0, 0]).is_err());
    }
}
