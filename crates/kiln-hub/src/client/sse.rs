//! Server-sent events framing (the WHATWG "event stream" format), fed in
//! arbitrary chunks as they come off the wire.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    /// The `id:` field of this event, when it had one.
    pub id: Option<String>,
    /// The `event:` field; `message` when absent, as in the spec.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser: bytes in, complete events out. A chunk may end in the
/// middle of a line (or of a UTF-8 sequence); the rest waits for the next one.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    /// A `\r` ended the last chunk: a `\n` opening the next one belongs to it.
    after_cr: bool,
    started: bool,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds a chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        let mut out = Vec::new();
        let mut bytes = chunk;
        if chunk.is_empty() {
            return Vec::new();
        }
        if std::mem::take(&mut self.after_cr)
            && let Some(rest) = bytes.strip_prefix(b"\n")
        {
            bytes = rest;
        }
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' | b'\r' => {
                    self.pending.extend_from_slice(&bytes[start..i]);
                    let line = std::mem::take(&mut self.pending);
                    if let Some(msg) = self.line(&line) {
                        out.push(msg);
                    }
                    if bytes[i] == b'\r' {
                        if i + 1 == bytes.len() {
                            self.after_cr = true;
                        } else if bytes[i + 1] == b'\n' {
                            i += 1;
                        }
                    }
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        self.pending.extend_from_slice(&bytes[start..]);
        out
    }

    fn line(&mut self, raw: &[u8]) -> Option<SseMessage> {
        let mut raw = raw;
        if !self.started {
            self.started = true;
            raw = raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw);
        }
        if raw.is_empty() {
            return self.dispatch();
        }
        let line = String::from_utf8_lossy(raw);
        if line.starts_with(':') {
            // A comment: servers send these as keep-alives.
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            // The spec ignores ids holding NUL.
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            // `retry:` and unknown fields: nothing to do for a client that
            // reconnects on its own terms.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseMessage> {
        let id = self.id.take();
        let event = self.event.take();
        // An event without data is not dispatched (the spec's rule).
        let data = self.data.take()?;
        Some(SseMessage {
            id,
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".to_string()),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: Option<&str>, event: &str, data: &str) -> SseMessage {
        SseMessage {
            id: id.map(str::to_string),
            event: event.to_string(),
            data: data.to_string(),
        }
    }

    #[test]
    fn parses_the_hub_framing() {
        let mut p = SseParser::new();
        let got = p.push(b"id: 7\nevent: build.state\ndata: {\"a\":1}\n\nid: 8\nevent: tag.changed\ndata: {}\n\n");
        assert_eq!(
            got,
            vec![
                msg(Some("7"), "build.state", "{\"a\":1}"),
                msg(Some("8"), "tag.changed", "{}")
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream = "\u{feff}: keep-alive\r\nid: 1\r\nevent: é\r\ndata: line one\r\ndata:line two\r\n\r\n\
                      data: no id\rdata\r\r\n: ping\n\nid: 3\ndata: x\n\n";
        let want = vec![
            msg(Some("1"), "é", "line one\nline two"),
            msg(None, "message", "no id\n"),
            msg(Some("3"), "message", "x"),
        ];
        let bytes = stream.as_bytes();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut p = SseParser::new();
                let mut got = p.push(&bytes[..a]);
                got.extend(p.push(&bytes[a..b]));
                got.extend(p.push(&bytes[b..]));
                assert_eq!(got, want, "split at {a} and {b}");
            }
        }
    }

    #[test]
    fn events_without_data_and_unfinished_events_are_not_dispatched() {
        let mut p = SseParser::new();
        assert!(p.push(b"id: 4\nevent: x\n\n").is_empty());
        // The id of an undispatched event does not leak into the next one.
        assert_eq!(p.push(b"data: y\n\n"), vec![msg(None, "message", "y")]);
        // No blank line yet: not dispatched (the connection may have died
        // mid-event).
        assert!(p.push(b"id: 5\ndata: partial\n").is_empty());
    }

    #[test]
    fn field_without_colon_and_value_with_colons() {
        let mut p = SseParser::new();
        assert_eq!(
            p.push(b"data\ndata: a: b\nretry: 10\nbogus: 1\n\n"),
            vec![msg(None, "message", "\na: b")]
        );
    }
}
