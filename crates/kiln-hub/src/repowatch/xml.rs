//! Small helpers shared by the repomd.xml and primary.xml readers.

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart};
use quick_xml::name::{Namespace, ResolveResult};

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
