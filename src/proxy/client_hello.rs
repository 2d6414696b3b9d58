//! A strict, allocation-light reader of the first bytes of a TLS client's stream:
//! is it TLS, and if so, which server name (SNI) and ALPN protocols does its
//! ClientHello ask for. Pure: bytes in, answer out; no I/O, never panics.
//!
//! Hand-written rather than built on `tls-parser`: l4lb reads a *peeked* prefix
//! of the stream that grows a segment at a time, so it needs "complete / need
//! more / invalid" at every length, and a ClientHello reassembled from several
//! handshake records, which `tls-parser`'s per-record parser does not do. The
//! grammar needed (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1) is small; every
//! length is checked before it is used, and property tests feed it arbitrary
//! bytes.

/// The most bytes of a stream l4lb reads ahead for a ClientHello (records,
/// headers and all); a hello that does not fit is refused.
pub const MAX_PREREAD: usize = 16 * 1024;

/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Largest plaintext record fragment (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 1 << 14;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const HOST_NAME: u8 = 0;

/// What the first bytes of a stream are, so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preread {
    /// So far a valid start of a ClientHello: read more.
    Incomplete,
    /// A whole ClientHello.
    Hello(ClientHello),
    /// Not TLS at all (the first byte is not a handshake record).
    NotTls,
    /// TLS that l4lb refuses: malformed, SSLv2, or too large.
    Invalid(&'static str),
}

/// What l4lb routes on from a ClientHello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` of the server_name extension, lower-cased; `None` without one.
    pub server_name: Option<String>,
    /// The ALPN protocols offered, in the client's order.
    pub alpn: Vec<String>,
}

/// Reads `bytes`, the start of a client's stream (at most [`MAX_PREREAD`] are looked at).
pub fn parse(bytes: &[u8]) -> Preread {
    let bytes = &bytes[..bytes.len().min(MAX_PREREAD)];
    match bytes.first() {
        None => return Preread::Incomplete,
        Some(&HANDSHAKE) => {}
        Some(&first) if is_sslv2_hello(first, bytes) => {
            return Preread::Invalid("an SSLv2 ClientHello (SSLv2 is not supported)");
        }
        Some(_) => return Preread::NotTls,
    }
    let mut handshake = Vec::new();
    let mut rest = bytes;
    loop {
        match hello_length(&handshake) {
            Err(why) => return Preread::Invalid(why),
            Ok(Some(total)) if handshake.len() >= total => {
                return match client_hello(&handshake[4..total]) {
                    Some(hello) => Preread::Hello(hello),
                    None => Preread::Invalid("a malformed ClientHello"),
                };
            }
            Ok(_) => {}
        }
        match next_record(rest) {
            Record::Whole { fragment, after } => {
                handshake.extend_from_slice(fragment);
                rest = after;
            }
            Record::Partial => return incomplete(bytes),
            Record::Invalid(why) => return Preread::Invalid(why),
        }
    }
}

/// Incomplete, unless the read-ahead is already full.
fn incomplete(bytes: &[u8]) -> Preread {
    if bytes.len() >= MAX_PREREAD {
        Preread::Invalid("no complete ClientHello within 16 KiB")
    } else {
        Preread::Incomplete
    }
}

/// An SSLv2-style hello: a two-byte length with the top bit set, then
/// message type 1 (CLIENT-HELLO).
fn is_sslv2_hello(first: u8, bytes: &[u8]) -> bool {
    first & 0x80 != 0 && bytes.get(2).is_none_or(|&t| t == 1)
}

/// The whole length (header included) of the ClientHello message whose start is
/// `handshake`, once its header is there.
fn hello_length(handshake: &[u8]) -> Result<Option<usize>, &'static str> {
    let Some(header) = handshake.get(..4) else {
        return match handshake.first() {
            Some(&t) if t != CLIENT_HELLO => Err("a handshake that is not a ClientHello"),
            _ => Ok(None),
        };
    };
    if header[0] != CLIENT_HELLO {
        return Err("a handshake that is not a ClientHello");
    }
    let length = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    if length + 4 > MAX_PREREAD {
        return Err("a ClientHello larger than 16 KiB");
    }
    Ok(Some(length + 4))
}

/// One record at the start of `bytes`.
enum Record<'a> {
    Whole { fragment: &'a [u8], after: &'a [u8] },
    Partial,
    Invalid(&'static str),
}

fn next_record(bytes: &[u8]) -> Record<'_> {
    let Some(header) = bytes.get(..5) else {
        return match bytes.first() {
            Some(&t) if t != HANDSHAKE => {
                Record::Invalid("a non-handshake record in a ClientHello")
            }
            _ => Record::Partial,
        };
    };
    if header[0] != HANDSHAKE {
        return Record::Invalid("a non-handshake record in a ClientHello");
    }
    if header[1] != 3 || header[2] > 4 {
        return Record::Invalid("a record of an unknown TLS version");
    }
    let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if length == 0 || length > MAX_FRAGMENT {
        return Record::Invalid("a handshake record of invalid length");
    }
    match bytes.get(5..5 + length) {
        Some(fragment) => Record::Whole {
            fragment,
            after: &bytes[5 + length..],
        },
        None => Record::Partial,
    }
}

/// A cursor over a byte string that fails (None) instead of over-reading.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The body of a ClientHello (after its 4-byte handshake header).
fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    let version = r.u16()?;
    if version >> 8 != 3 {
        return None;
    }
    r.take(32)?; // random
    let session_id = r.vec8()?;
    let suites = r.vec16()?;
    let compression = r.vec8()?;
    if session_id.len() > 32 || suites.is_empty() || suites.len() % 2 != 0 || compression.is_empty()
    {
        return None;
    }
    let mut hello = ClientHello::default();
    if r.is_empty() {
        return Some(hello); // no extensions (TLS 1.0 allows it)
    }
    let mut extensions = Reader(r.vec16()?);
    if !r.is_empty() {
        return None;
    }
    let mut seen: Vec<u16> = Vec::new();
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if seen.contains(&kind) {
            return None; // RFC 8446 §4.2: one extension of each type at most
        }
        seen.push(kind);
        match kind {
            EXT_SERVER_NAME => hello.server_name = server_name(data)?,
            EXT_ALPN => hello.alpn = alpn(data)?,
            _ => {}
        }
    }
    Some(hello)
}

/// The host name of a server_name extension; `Some(None)` for an empty one
/// (which a server sends back, and some clients too).
fn server_name(data: &[u8]) -> Option<Option<String>> {
    if data.is_empty() {
        return Some(None);
    }
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16()?);
    if !outer.is_empty() {
        return None;
    }
    let mut found = None;
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == HOST_NAME {
            if found.is_some() {
                return None; // RFC 6066: one name of each type
            }
            found = Some(host_name(name)?);
        }
    }
    Some(found)
}

/// A host name as RFC 6066 allows it (ASCII, no trailing dot), lower-cased.
fn host_name(name: &[u8]) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.last() != Some(&b'.')
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid {
        return None;
    }
    Some(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// The protocol names of an ALPN extension.
fn alpn(data: &[u8]) -> Option<Vec<String>> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16()?);
    if !outer.is_empty() || list.is_empty() {
        return None;
    }
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let name = list.vec8()?;
        if name.is_empty() {
            return None;
        }
        protocols.push(String::from_utf8_lossy(name).into_owned());
    }
    Some(protocols)
}

#[cfg(test)]
mod tests;
