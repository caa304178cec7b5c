//! What the repomd.xml and primary.xml readers share: the event loop and
//! small helpers.

use std::io::{self, BufRead};

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

/// A document's parser as [`drive`] runs it. [`drive`] keeps the element
/// stack, collects text and checks the root; the parser says what each
/// element means and keeps what it needs.
pub(super) trait Handler {
    /// What the parser makes of an element, held on the stack while the
    /// element is open.
    type Elem: Copy;
    type Error;

    /// An element starts at byte `position`; `parent` is `None` for the
    /// root, which comes only once (a second one is refused before).
    fn open(
        &mut self,
        parent: Option<Self::Elem>,
        resolved: &ResolveResult<'_>,
        element: &BytesStart<'_>,
        position: u64,
    ) -> Result<Self::Elem, Self::Error>;

    /// `elem` ends at byte `position` (its end tag, or the whole of an
    /// empty element). `text` is what it held, when it [wants
    /// text](Handler::wants_text); text inside its child elements is left
    /// out.
    fn close(&mut self, elem: Self::Elem, text: &str, position: u64) -> Result<(), Self::Error>;

    /// Whether the text directly inside `elem` is collected for
    /// [`close`](Handler::close). Most is not: skipping it is what keeps a
    /// large primary.xml cheap.
    fn wants_text(elem: Self::Elem) -> bool;
}

/// Why [`drive`] stopped; each reader turns it into its own error.
#[derive(Debug)]
pub(super) enum DriveError<E> {
    /// The handler refused the document.
    Handler(E),
    /// Reading the input failed after `position` bytes.
    Read { position: u64, source: io::Error },
    /// Not well-formed XML.
    Xml { position: u64, message: String },
    /// The input ended at `position` with elements still open.
    Unclosed { position: u64 },
    /// No element at all.
    NoRoot,
}

/// Reads `xml` to the end, handing its elements and their wanted text to
/// `handler`. Positions are byte offsets into `xml`.
pub(super) fn drive<R: BufRead, H: Handler>(
    xml: R,
    handler: &mut H,
) -> Result<(), DriveError<H::Error>> {
    let mut reader = NsReader::from_reader(xml);
    let mut buf = Vec::with_capacity(4096);
    let mut stack: Vec<H::Elem> = Vec::with_capacity(16);
    let mut seen_root = false;
    let mut text = String::new();
    loop {
        let position = reader.buffer_position();
        buf.clear();
        let (resolved, event) = match reader.read_resolved_event_into(&mut buf) {
            Ok(next) => next,
            Err(quick_xml::Error::Io(e)) => {
                // The Arc is quick-xml's alone; unwrapping it keeps the
                // original error (and whatever marker it carries) reachable.
                let source = std::sync::Arc::try_unwrap(e)
                    .unwrap_or_else(|shared| io::Error::new(shared.kind(), shared.to_string()));
                return Err(DriveError::Read {
                    position: reader.buffer_position(),
                    source,
                });
            }
            Err(e) => {
                return Err(DriveError::Xml {
                    position: reader.error_position(),
                    message: e.to_string(),
                });
            }
        };
        let xml_error = |message: String| DriveError::Xml { position, message };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let parent = stack.last().copied();
                if parent.is_none() {
                    if seen_root {
                        return Err(xml_error("a second root element".to_string()));
                    }
                    seen_root = true;
                }
                let elem = handler
                    .open(parent, &resolved, e, position)
                    .map_err(DriveError::Handler)?;
                if H::wants_text(elem) {
                    text.clear();
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(elem);
                } else {
                    handler
                        .close(elem, &text, position)
                        .map_err(DriveError::Handler)?;
                }
            }
            Event::End(_) => {
                if let Some(elem) = stack.pop() {
                    handler
                        .close(elem, &text, position)
                        .map_err(DriveError::Handler)?;
                }
            }
            Event::Text(t) if wants_text::<H>(&stack) => {
                text.push_str(&t.xml10_content().map_err(|e| xml_error(e.to_string()))?);
            }
            Event::CData(t) if wants_text::<H>(&stack) => {
                text.push_str(&t.decode().map_err(|e| xml_error(e.to_string()))?);
            }
            Event::GeneralRef(r) if wants_text::<H>(&stack) => {
                push_reference(&mut text, &r).map_err(xml_error)?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(DriveError::Unclosed {
            position: reader.buffer_position(),
        });
    }
    if !seen_root {
        return Err(DriveError::NoRoot);
    }
    Ok(())
}

fn wants_text<H: Handler>(stack: &[H::Elem]) -> bool {
    stack.last().is_some_and(|&elem| H::wants_text(elem))
}

/// Whether an element is in `namespace`. Unprefixed names without a default
/// namespace count too: hand-written metadata often leaves out the
/// `xmlns`, and dnf reads it all the same.
pub(super) fn in_namespace(resolved: &ResolveResult<'_>, namespace: &[u8]) -> bool {
    match resolved {
        ResolveResult::Bound(Namespace(ns)) => *ns == namespace,
        ResolveResult::Unbound => true,
        ResolveResult::Unknown(_) => false,
    }
}

/// The value of the unprefixed attribute `name`, entities resolved.
pub(super) fn attribute(element: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, String> {
    for attr in element.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        if attr.key.as_ref() == name {
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// Appends what an entity or character reference (`&amp;`, `&#38;`) in text
/// stands for.
pub(super) fn push_reference(out: &mut String, reference: &BytesRef<'_>) -> Result<(), String> {
    if let Some(c) = reference.resolve_char_ref().map_err(|e| e.to_string())? {
        out.push(c);
        return Ok(());
    }
    let name = reference.decode().map_err(|e| e.to_string())?;
    match resolve_predefined_entity(&name) {
        Some(text) => {
            out.push_str(text);
            Ok(())
        }
        None => Err(format!("unknown entity &{name};")),
    }
}

/// An element name for messages: `rpm:sourcerpm`, lossy on bad UTF-8.
pub(super) fn display_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}
