//! HAProxy PROXY protocol, versions 1 and 2 (haproxy `doc/proxy-protocol.txt`).
//!
//! This module owns the wire format only: encoding headers for connections the
//! balancer forwards, and strict, incremental parsing of headers received from
//! an upstream proxy. It performs no I/O and knows nothing about sockets,
//! deadlines or buffering: callers feed the bytes received so far to [`parse`],
//! read more while it answers [`Parsed::Incomplete`] (within their own deadline
//! and never beyond [`MAX_HEADER_LEN`]), and hand every byte after
//! `consumed` to the stream.
//!
//! Parsing is strict because the input comes from the network:
//!
//! * Input that cannot start either signature fails at once with
//!   [`ParseError::NotProxyProtocol`], so a client sending plain data fails fast.
//! * A valid prefix of a header is always `Incomplete`, never an error.
//!   `at_least` is a lower bound on the missing bytes: reading exactly that many
//!   more never reads past the end of the header.
//! * v1: single spaces, `TCP4`/`TCP6`/`UNKNOWN`, addresses of the declared
//!   family, CRLF within 107 bytes. Ports are canonical decimal: digits only,
//!   no sign, and no leading zero except for `0` itself (`080` is rejected).
//!   `UNKNOWN` yields [`ProxyHeader::Local`] and the rest of its line is ignored.
//! * v2: version 2, command LOCAL or PROXY. LOCAL yields
//!   [`ProxyHeader::Local`] and its whole block (family included) is ignored,
//!   as the specification requires. Under PROXY, `AF_UNSPEC` is treated like
//!   LOCAL (its block is ignored), and `AF_UNIX` also yields `Local` because a
//!   socket path is not a usable peer address; its block must still hold the
//!   216-byte address pair. TLVs after the addresses are skipped without being
//!   interpreted, but each must fit in the block.

use std::net::{IpAddr, SocketAddr};

/// What a parsed header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection: the original client (source) and the address it connected to (destination).
    Proxy {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v2 LOCAL command, or v1 "UNKNOWN": the connection is the proxy's own (health check); use the real peer address.
    Local,
}

/// Protocol version to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Why a received header was rejected. Every error is final for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes match neither the v1 nor the v2 signature.
    #[error("not a PROXY protocol header (neither v1 nor v2 signature)")]
    NotProxyProtocol,
    /// A v1 line without CRLF within its first 107 bytes.
    #[error("PROXY v1 header has no CRLF within 107 bytes")]
    V1TooLong,
    /// A v1 line that breaks the grammar; the text says which part.
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    /// A v2 version nibble other than 2.
    #[error("PROXY v2 header has an unsupported version (must be 2)")]
    V2BadVersion,
    /// A v2 command other than LOCAL (0) or PROXY (1).
    #[error("PROXY v2 header has an unsupported command (must be LOCAL or PROXY)")]
    V2BadCommand,
    /// A v2 family/protocol byte outside the combinations the specification defines.
    #[error("PROXY v2 header has an unsupported address family or transport protocol")]
    V2BadFamily,
    /// A v2 address block shorter than its family needs.
    #[error("PROXY v2 address block is shorter than its address family requires")]
    V2LengthTooShort,
    /// A v2 TLV whose header or value runs past the end of the block.
    #[error("PROXY v2 TLV runs past the end of the header")]
    V2TlvOverrun,
}

/// Result of feeding bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed (`at_least` more, if known) — the caller reads more, within its deadline.
    Incomplete { at_least: Option<usize> },
    /// A complete header of `consumed` bytes; the bytes after it belong to the stream.
    Complete {
        header: ProxyHeader,
        consumed: usize,
    },
}

/// The longest header `parse` accepts (v2: 16 + 65535; v1: 107); callers bound their reads with it.
pub const MAX_HEADER_LEN: usize = 16 + 65_535;

const V1_SIGNATURE: &[u8] = b"PROXY ";
/// Longest v1 line, CRLF included.
const V1_MAX_LEN: usize = 107;
/// Shortest v1 line: `PROXY UNKNOWN\r\n`.
const V1_MIN_LEN: usize = 15;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/protocol and the 16-bit length.
const V2_FIXED_LEN: usize = 16;
/// Version 2 in the high nibble, with the PROXY command.
const V2_VERSION_PROXY: u8 = 0x21;
const V2_STREAM: u8 = 0x01;
const V2_DGRAM: u8 = 0x02;

/// Parses a v1 or v2 header at the start of `buf` (auto-detected by signature).
///
/// # Errors
///
/// Any [`ParseError`] means `buf` does not start with a valid header and no
/// further bytes can make it one: the caller should drop the connection.
pub fn parse(buf: &[u8]) -> Result<Parsed, ParseError> {
    if buf.is_empty() {
        Ok(incomplete(V1_MIN_LEN.min(V2_FIXED_LEN)))
    } else if starts_compatible(buf, V2_SIGNATURE) {
        parse_v2(buf)
    } else if starts_compatible(buf, V1_SIGNATURE) {
        parse_v1(buf)
    } else {
        Err(ParseError::NotProxyProtocol)
    }
}

/// Encodes a header for a proxied connection (TCP). v1: "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n" (TCP6 for IPv6; if the two families differ, map the IPv4 one to IPv6-mapped and use TCP6 / AF_INET6).
///
/// IPv6 flow info and scope ids are not carried by the protocol.
#[must_use]
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    match version {
        Version::V1 => encode_v1(source, destination),
        Version::V2 => encode_v2(V2_STREAM, source, destination),
    }
}

/// Encodes a v2 header for a UDP flow (protocol DGRAM: 0x12 for IPv4, 0x22 for IPv6).
#[must_use]
pub fn encode_v2_udp(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    encode_v2(V2_DGRAM, source, destination)
}

fn incomplete(at_least: usize) -> Parsed {
    Parsed::Incomplete {
        at_least: Some(at_least),
    }
}

/// Whether `buf` and `signature` agree on their common prefix.
fn starts_compatible(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

// ---------------------------------------------------------------- encoding

/// Brings both addresses to one family, mapping IPv4 to IPv6 when they differ.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    if source.is_ipv4() == destination.is_ipv4() {
        return (source, destination);
    }
    let to_v6 = |addr: SocketAddr| match addr.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), addr.port()),
        IpAddr::V6(_) => addr,
    };
    (to_v6(source), to_v6(destination))
}

fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(source, destination);
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

fn encode_v2(transport: u8, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(source, destination);
    let (family, addr_len): (u8, u16) = if src.is_ipv4() {
        (0x10, 12)
    } else {
        (0x20, 36)
    };
    let mut out = Vec::with_capacity(V2_FIXED_LEN + usize::from(addr_len));
    out.extend_from_slice(V2_SIGNATURE);
    out.push(V2_VERSION_PROXY);
    out.push(family | transport);
    out.extend_from_slice(&addr_len.to_be_bytes());
    push_ip(&mut out, src.ip());
    push_ip(&mut out, dst.ip());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
}

// ---------------------------------------------------------------- v1

fn parse_v1(buf: &[u8]) -> Result<Parsed, ParseError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    if let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") {
        let header = parse_v1_line(&window[..end])?;
        return Ok(Parsed::Complete {
            header,
            consumed: end + 2,
        });
    }
    if window.len() >= V1_MAX_LEN {
        return Err(ParseError::V1TooLong);
    }
    if window.len() >= V1_SIGNATURE.len() {
        check_v1_partial(&window[V1_SIGNATURE.len()..])?;
    }
    let missing = v1_missing(window);
    if window.len() + missing > V1_MAX_LEN {
        return Err(ParseError::V1TooLong);
    }
    Ok(incomplete(missing))
}

/// Lower bound on the bytes still missing from a v1 line without CRLF so far.
fn v1_missing(partial: &[u8]) -> usize {
    let to_crlf = if partial.last() == Some(&b'\r') { 1 } else { 2 };
    V1_MIN_LEN.saturating_sub(partial.len()).max(to_crlf)
}

/// Fails fast on a partial line (after "PROXY ") that no byte can make valid.
fn check_v1_partial(rest: &[u8]) -> Result<(), ParseError> {
    // A trailing CR may be the start of the CRLF.
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    let Some(space) = rest.iter().position(|&b| b == b' ') else {
        return check_v1_proto_prefix(rest);
    };
    let fields = &rest[space + 1..];
    match &rest[..space] {
        b"UNKNOWN" => Ok(()),
        b"TCP4" => check_v1_fields_prefix(fields, |b| b.is_ascii_digit() || b == b'.'),
        b"TCP6" => {
            check_v1_fields_prefix(fields, |b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        _ => Err(ParseError::V1Malformed("unknown protocol")),
    }
}

fn check_v1_proto_prefix(token: &[u8]) -> Result<(), ParseError> {
    let known = [&b"TCP4"[..], b"TCP6", b"UNKNOWN"];
    if known.iter().any(|proto| proto.starts_with(token)) {
        Ok(())
    } else {
        Err(ParseError::V1Malformed("unknown protocol"))
    }
}

/// Checks the partial address/port fields of a TCP4/TCP6 line.
fn check_v1_fields_prefix(fields: &[u8], allowed: impl Fn(u8) -> bool) -> Result<(), ParseError> {
    if fields.iter().any(|&b| b != b' ' && !allowed(b)) {
        return Err(ParseError::V1Malformed("unexpected character"));
    }
    if fields.windows(2).any(|pair| pair == b"  ") || fields.first() == Some(&b' ') {
        return Err(ParseError::V1Malformed(
            "fields must be separated by single spaces",
        ));
    }
    if fields.split(|&b| b == b' ').count() > 4 {
        return Err(ParseError::V1Malformed("too many fields"));
    }
    Ok(())
}

/// Parses a complete v1 line, without its CRLF.
fn parse_v1_line(line: &[u8]) -> Result<ProxyHeader, ParseError> {
    let rest = line
        .strip_prefix(V1_SIGNATURE)
        .ok_or(ParseError::V1Malformed("missing \"PROXY \" prefix"))?;
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(ProxyHeader::Local);
    }
    let fields: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
    let [proto, src, dst, src_port, dst_port] = fields[..] else {
        return Err(ParseError::V1Malformed(v1_field_count_reason(&fields)));
    };
    let v4 = match proto {
        b"TCP4" => true,
        b"TCP6" => false,
        _ => return Err(ParseError::V1Malformed("unknown protocol")),
    };
    let source_ip =
        parse_v1_ip(src, v4).ok_or(ParseError::V1Malformed("invalid source address"))?;
    let dest_ip =
        parse_v1_ip(dst, v4).ok_or(ParseError::V1Malformed("invalid destination address"))?;
    let source_port =
        parse_v1_port(src_port).ok_or(ParseError::V1Malformed("invalid source port"))?;
    let dest_port =
        parse_v1_port(dst_port).ok_or(ParseError::V1Malformed("invalid destination port"))?;
    Ok(ProxyHeader::Proxy {
        source: SocketAddr::new(source_ip, source_port),
        destination: SocketAddr::new(dest_ip, dest_port),
    })
}

fn v1_field_count_reason(fields: &[&[u8]]) -> &'static str {
    const SPACING: &str = "fields must be separated by single spaces";
    let has_empty = fields.iter().any(|field| field.is_empty());
    match fields.first() {
        Some(&b"TCP4" | &b"TCP6") if has_empty => SPACING,
        Some(&b"TCP4" | &b"TCP6") => "wrong number of fields",
        Some(&b"") if fields.len() > 1 => SPACING,
        _ => "unknown protocol",
    }
}

/// Parses an address of the declared family only (no IPv4 in TCP6 or vice versa).
fn parse_v1_ip(token: &[u8], v4: bool) -> Option<IpAddr> {
    let text = std::str::from_utf8(token).ok()?;
    if v4 {
        text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        text.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

/// Canonical decimal port: 1–5 digits, no sign, no leading zero except "0".
fn parse_v1_port(token: &[u8]) -> Option<u16> {
    let digits_only = !token.is_empty() && token.len() <= 5 && token.iter().all(u8::is_ascii_digit);
    let leading_zero = token.len() > 1 && token.first() == Some(&b'0');
    if !digits_only || leading_zero {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

// ---------------------------------------------------------------- v2

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Local,
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Unspec,
    Inet,
    Inet6,
    Unix,
}

impl Family {
    /// Bytes of the address pair (with ports) this family puts first in the block.
    fn addr_len(self) -> usize {
        match self {
            Family::Unspec => 0,
            Family::Inet => 12,
            Family::Inet6 => 36,
            Family::Unix => 216,
        }
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ParseError> {
    if buf.len() < V2_FIXED_LEN {
        check_v2_partial(buf)?;
        return Ok(incomplete(V2_FIXED_LEN - buf.len()));
    }
    let command = v2_command(buf[12])?;
    let family = v2_family(command, buf[13])?;
    let block_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if family.is_some_and(|family| block_len < family.addr_len()) {
        return Err(ParseError::V2LengthTooShort);
    }
    let total = V2_FIXED_LEN + block_len;
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(incomplete(total - buf.len()));
    };
    let header = match family {
        Some(family) => decode_v2_block(family, block)?,
        None => ProxyHeader::Local,
    };
    Ok(Parsed::Complete {
        header,
        consumed: total,
    })
}

/// Fails fast on the version/command and family bytes of a short v2 prefix.
fn check_v2_partial(buf: &[u8]) -> Result<(), ParseError> {
    if let Some(&ver_cmd) = buf.get(12) {
        let command = v2_command(ver_cmd)?;
        if let Some(&fam) = buf.get(13) {
            v2_family(command, fam)?;
        }
    }
    Ok(())
}

fn v2_command(ver_cmd: u8) -> Result<Command, ParseError> {
    if ver_cmd >> 4 != 2 {
        return Err(ParseError::V2BadVersion);
    }
    match ver_cmd & 0x0f {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        _ => Err(ParseError::V2BadCommand),
    }
}

/// The family to decode, or `None` when the block is to be ignored (LOCAL).
fn v2_family(command: Command, fam: u8) -> Result<Option<Family>, ParseError> {
    if command == Command::Local {
        return Ok(None);
    }
    match fam {
        0x00 => Ok(Some(Family::Unspec)),
        0x11 | 0x12 => Ok(Some(Family::Inet)),
        0x21 | 0x22 => Ok(Some(Family::Inet6)),
        0x31 | 0x32 => Ok(Some(Family::Unix)),
        _ => Err(ParseError::V2BadFamily),
    }
}

/// Decodes the address block of a PROXY command; `block` is exactly the declared length.
fn decode_v2_block(family: Family, block: &[u8]) -> Result<ProxyHeader, ParseError> {
    let (header, tlvs) = match family {
        Family::Unspec => return Ok(ProxyHeader::Local),
        Family::Inet => read_addresses::<4>(block)?,
        Family::Inet6 => read_addresses::<16>(block)?,
        Family::Unix => {
            let tlvs = block
                .get(family.addr_len()..)
                .ok_or(ParseError::V2LengthTooShort)?;
            (ProxyHeader::Local, tlvs)
        }
    };
    skip_tlvs(tlvs)?;
    Ok(header)
}

/// Reads source and destination addresses of `N` bytes, then both ports; returns the rest.
fn read_addresses<const N: usize>(block: &[u8]) -> Result<(ProxyHeader, &[u8]), ParseError>
where
    IpAddr: From<[u8; N]>,
{
    let (src, rest) = take::<N>(block)?;
    let (dst, rest) = take::<N>(rest)?;
    let (src_port, rest) = take::<2>(rest)?;
    let (dst_port, rest) = take::<2>(rest)?;
    let header = ProxyHeader::Proxy {
        source: SocketAddr::new(IpAddr::from(*src), u16::from_be_bytes(*src_port)),
        destination: SocketAddr::new(IpAddr::from(*dst), u16::from_be_bytes(*dst_port)),
    };
    Ok((header, rest))
}

fn take<const N: usize>(buf: &[u8]) -> Result<(&[u8; N], &[u8]), ParseError> {
    buf.split_first_chunk::<N>()
        .ok_or(ParseError::V2LengthTooShort)
}

/// Walks the TLVs (type u8, length u16 BE, value) without interpreting them.
fn skip_tlvs(mut rest: &[u8]) -> Result<(), ParseError> {
    while !rest.is_empty() {
        let [_kind, len_hi, len_lo, value @ ..] = rest else {
            return Err(ParseError::V2TlvOverrun);
        };
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
        rest = value.get(len..).ok_or(ParseError::V2TlvOverrun)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn proxy(source: &str, destination: &str) -> ProxyHeader {
        ProxyHeader::Proxy {
            source: addr(source),
            destination: addr(destination),
        }
    }

    fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
        match parse(buf) {
            Ok(Parsed::Complete { header, consumed }) => (header, consumed),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    fn error(buf: &[u8]) -> ParseError {
        match parse(buf) {
            Err(err) => err,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn malformed(line: &str) -> &'static str {
        match error(line.as_bytes()) {
            ParseError::V1Malformed(reason) => reason,
            other => panic!("expected V1Malformed for {line:?}, got {other:?}"),
        }
    }

    /// A v2 header with the given version/command and family bytes around `block`.
    fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let len = u16::try_from(block.len()).expect("block fits in u16");
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[ver_cmd, fam]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    /// 127.0.0.1:1111 -> 127.0.0.2:2222 address block.
    const V4_BLOCK: [u8; 12] = [127, 0, 0, 1, 127, 0, 0, 2, 0x04, 0x57, 0x08, 0xae];

    fn v4_block_with(tlvs: &[u8]) -> Vec<u8> {
        let mut block = V4_BLOCK.to_vec();
        block.extend_from_slice(tlvs);
        block
    }

    fn assert_all_prefixes_incomplete(header: &[u8]) {
        for len in 0..header.len() {
            match parse(&header[..len]) {
                Ok(Parsed::Incomplete { at_least: Some(n) }) => {
                    assert!(n >= 1, "prefix {len}: at_least 0");
                    assert!(
                        len + n <= header.len(),
                        "prefix {len}: at_least {n} overshoots"
                    );
                }
                other => panic!("prefix {len} of {header:?}: {other:?}"),
            }
        }
    }

    // ------------------------------------------------------------ exact bytes

    #[test]
    fn v1_encodes_tcp4_exactly() {
        let bytes = encode(Version::V1, addr("1.2.3.4:1111"), addr("5.6.7.8:2222"));
        assert_eq!(bytes, b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n");
    }

    #[test]
    fn v1_encodes_tcp6_exactly() {
        let bytes = encode(Version::V1, addr("[2001:db8::1]:0"), addr("[::1]:65535"));
        assert_eq!(bytes, b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n");
    }

    #[test]
    fn v1_maps_mixed_families_to_tcp6() {
        let bytes = encode(Version::V1, addr("1.2.3.4:1111"), addr("[2001:db8::2]:80"));
        assert_eq!(bytes, b"PROXY TCP6 ::ffff:1.2.3.4 2001:db8::2 1111 80\r\n");
        let bytes = encode(Version::V1, addr("[2001:db8::2]:80"), addr("1.2.3.4:1111"));
        assert_eq!(bytes, b"PROXY TCP6 2001:db8::2 ::ffff:1.2.3.4 80 1111\r\n");
    }

    #[test]
    fn v2_encodes_tcp4_exactly() {
        let bytes = encode(Version::V2, addr("127.0.0.1:1111"), addr("127.0.0.2:2222"));
        let expected: [u8; 28] = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
            0x0a, // signature
            0x21, // version 2, PROXY
            0x11, // AF_INET, STREAM
            0x00, 0x0c, // 12 bytes follow
            0x7f, 0x00, 0x00, 0x01, // 127.0.0.1
            0x7f, 0x00, 0x00, 0x02, // 127.0.0.2
            0x04, 0x57, // 1111
            0x08, 0xae, // 2222
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn v2_encodes_udp4_with_dgram_family() {
        let bytes = encode_v2_udp(addr("127.0.0.1:1111"), addr("127.0.0.2:2222"));
        assert_eq!(bytes, v2(0x21, 0x12, &V4_BLOCK));
    }

    #[test]
    fn v2_encodes_tcp6_and_udp6_exactly() {
        let (src, dst) = (addr("[2001:db8::1]:1111"), addr("[::1]:2222"));
        let mut block = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
            .octets()
            .to_vec();
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&[0x04, 0x57, 0x08, 0xae]);
        assert_eq!(encode(Version::V2, src, dst), v2(0x21, 0x21, &block));
        assert_eq!(encode_v2_udp(src, dst), v2(0x21, 0x22, &block));
    }

    #[test]
    fn v2_maps_mixed_families_to_inet6() {
        let bytes = encode(Version::V2, addr("127.0.0.1:1111"), addr("[::1]:2222"));
        assert_eq!(&bytes[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let (header, _) = complete(&bytes);
        assert_eq!(header, proxy("[::ffff:127.0.0.1]:1111", "[::1]:2222"));
    }

    // ------------------------------------------------------------ round trips

    #[test]
    fn round_trips_every_version_and_family() {
        let pairs = [
            ("10.0.0.1:40000", "192.168.1.1:443"),
            ("[2001:db8::dead:beef]:1", "[fe80::1]:65535"),
            ("[::ffff:10.0.0.1]:5", "[::]:0"),
        ];
        for (src, dst) in pairs {
            let expected = proxy(src, dst);
            for bytes in [
                encode(Version::V1, addr(src), addr(dst)),
                encode(Version::V2, addr(src), addr(dst)),
                encode_v2_udp(addr(src), addr(dst)),
            ] {
                assert_eq!(complete(&bytes), (expected, bytes.len()));
            }
        }
    }

    #[test]
    fn mixed_families_round_trip_as_mapped_ipv6() {
        let expected = proxy("[::ffff:1.2.3.4]:1", "[2001:db8::1]:2");
        for version in [Version::V1, Version::V2] {
            let bytes = encode(version, addr("1.2.3.4:1"), addr("[2001:db8::1]:2"));
            assert_eq!(complete(&bytes).0, expected);
        }
        let bytes = encode_v2_udp(addr("1.2.3.4:1"), addr("[2001:db8::1]:2"));
        assert_eq!(complete(&bytes).0, expected);
    }

    #[test]
    fn bytes_after_the_header_are_not_consumed() {
        let headers = [
            encode(Version::V1, addr("1.2.3.4:1"), addr("5.6.7.8:2")),
            encode(Version::V2, addr("1.2.3.4:1"), addr("5.6.7.8:2")),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(0x20, 0x00, &[]),
        ];
        for header in headers {
            let mut buf = header.clone();
            buf.extend_from_slice(b"\r\nPROXY GET / HTTP/1.1\r\n\r\n");
            assert_eq!(complete(&buf).1, header.len());
        }
    }

    // ------------------------------------------------------------ LOCAL and friends

    #[test]
    fn v2_local_is_local_and_ignores_family_and_block() {
        assert_eq!(complete(&v2(0x20, 0x00, &[])), (ProxyHeader::Local, 16));
        assert_eq!(
            complete(&v2(0x20, 0x11, &V4_BLOCK)),
            (ProxyHeader::Local, 28)
        );
        // The family is ignored under LOCAL, even an undefined one, and so is the block.
        assert_eq!(
            complete(&v2(0x20, 0xff, &[1, 2, 3])),
            (ProxyHeader::Local, 19)
        );
        assert_eq!(complete(&v2(0x20, 0x21, &[])), (ProxyHeader::Local, 16));
    }

    #[test]
    fn v1_unknown_is_local_and_ignores_the_rest_of_the_line() {
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Local, 15));
        let line = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nDATA";
        assert_eq!(complete(line), (ProxyHeader::Local, line.len() - 4));
        assert_eq!(malformed("PROXY UNKNOWNX\r\n"), "unknown protocol");
    }

    #[test]
    fn v2_af_unspec_is_local() {
        assert_eq!(complete(&v2(0x21, 0x00, &[])), (ProxyHeader::Local, 16));
        assert_eq!(complete(&v2(0x21, 0x00, &[9; 7])), (ProxyHeader::Local, 23));
    }

    #[test]
    fn v2_af_unix_is_local_and_needs_its_block() {
        for fam in [0x31, 0x32] {
            assert_eq!(
                complete(&v2(0x21, fam, &[0; 216])),
                (ProxyHeader::Local, 232)
            );
            let mut with_tlv = vec![0; 216];
            with_tlv.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]);
            assert_eq!(
                complete(&v2(0x21, fam, &with_tlv)),
                (ProxyHeader::Local, 236)
            );
            assert_eq!(
                error(&v2(0x21, fam, &[0; 215])),
                ParseError::V2LengthTooShort
            );
        }
        let mut overrun = vec![0; 216];
        overrun.extend_from_slice(&[0x04, 0x00, 0x02, 0x00]);
        assert_eq!(error(&v2(0x21, 0x31, &overrun)), ParseError::V2TlvOverrun);
    }

    // ------------------------------------------------------------ TLVs

    #[test]
    fn v2_tlvs_are_skipped() {
        let tlvs = [
            0x01, 0x00, 0x02, b'h', b'2', // ALPN "h2"
            0x04, 0x00, 0x00, // NOOP, empty
            0x04, 0x00, 0x03, 0, 0, 0, // NOOP padding
        ];
        let bytes = v2(0x21, 0x11, &v4_block_with(&tlvs));
        let expected = proxy("127.0.0.1:1111", "127.0.0.2:2222");
        assert_eq!(complete(&bytes), (expected, 28 + tlvs.len()));
    }

    #[test]
    fn v2_tlv_overrun_is_an_error() {
        for tlvs in [
            &[0x01, 0x00, 0x03, b'h', b'2'][..], // value longer than the block
            &[0x01][..],                         // truncated TLV header
            &[0x01, 0x00][..],
            &[0x04, 0x00, 0x00, 0x01, 0xff][..], // second TLV overruns
        ] {
            let bytes = v2(0x21, 0x11, &v4_block_with(tlvs));
            assert_eq!(error(&bytes), ParseError::V2TlvOverrun, "{tlvs:?}");
        }
    }

    #[test]
    fn v2_accepts_the_longest_header() {
        let value_len = 65_535 - 12 - 3;
        let mut tlvs = vec![0x04];
        tlvs.extend_from_slice(&u16::try_from(value_len).expect("fits").to_be_bytes());
        tlvs.resize(3 + value_len, 0);
        let bytes = v2(0x21, 0x11, &v4_block_with(&tlvs));
        assert_eq!(bytes.len(), MAX_HEADER_LEN);
        assert_eq!(complete(&bytes).1, MAX_HEADER_LEN);
    }

    // ------------------------------------------------------------ v2 errors

    #[test]
    fn v2_bad_version() {
        for ver_cmd in [0x01, 0x11, 0x31, 0xf1] {
            assert_eq!(
                error(&v2(ver_cmd, 0x11, &V4_BLOCK)),
                ParseError::V2BadVersion
            );
            assert_eq!(
                error(&v2(ver_cmd, 0x11, &V4_BLOCK)[..13]),
                ParseError::V2BadVersion
            );
        }
    }

    #[test]
    fn v2_bad_command() {
        for ver_cmd in [0x22, 0x2f] {
            assert_eq!(
                error(&v2(ver_cmd, 0x11, &V4_BLOCK)),
                ParseError::V2BadCommand
            );
            assert_eq!(
                error(&v2(ver_cmd, 0x11, &V4_BLOCK)[..13]),
                ParseError::V2BadCommand
            );
        }
    }

    #[test]
    fn v2_bad_family() {
        for fam in [0x01, 0x02, 0x10, 0x13, 0x20, 0x30, 0x41, 0xff] {
            assert_eq!(
                error(&v2(0x21, fam, &V4_BLOCK)),
                ParseError::V2BadFamily,
                "{fam:#x}"
            );
            assert_eq!(
                error(&v2(0x21, fam, &V4_BLOCK)[..14]),
                ParseError::V2BadFamily
            );
        }
    }

    #[test]
    fn v2_length_too_short() {
        assert_eq!(
            error(&v2(0x21, 0x11, &[0; 11])),
            ParseError::V2LengthTooShort
        );
        assert_eq!(error(&v2(0x21, 0x12, &[])), ParseError::V2LengthTooShort);
        assert_eq!(
            error(&v2(0x21, 0x21, &[0; 35])),
            ParseError::V2LengthTooShort
        );
        assert_eq!(
            error(&v2(0x21, 0x22, &[0; 12])),
            ParseError::V2LengthTooShort
        );
        // Known from the fixed part alone, before the block arrives.
        assert_eq!(
            error(&v2(0x21, 0x21, &[0; 35])[..16]),
            ParseError::V2LengthTooShort
        );
    }

    // ------------------------------------------------------------ signatures

    #[test]
    fn plain_data_fails_fast() {
        for data in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"G",
            b"\x16\x03\x01",
            b"PROXZ",
            b"PROXY\r\n",
            b"proxy ",
            b"\r\n\r\n\0\r\nQUIX",
            b"\r\n\r\n\x01",
            b"\r\r",
        ] {
            assert_eq!(error(data), ParseError::NotProxyProtocol, "{data:?}");
        }
    }

    #[test]
    fn empty_input_is_incomplete() {
        assert_eq!(parse(b""), Ok(Parsed::Incomplete { at_least: Some(15) }));
    }

    // ------------------------------------------------------------ v1 errors

    #[test]
    fn v1_rejects_bad_spacing() {
        let reason = "fields must be separated by single spaces";
        assert_eq!(malformed("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), reason);
        assert_eq!(malformed("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), reason);
        assert_eq!(malformed("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n"), reason);
        assert_eq!(malformed("PROXY TCP4 1.2.3.4  5"), reason);
        assert_eq!(
            error(b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            ParseError::V1Malformed(reason)
        );
    }

    #[test]
    fn v1_rejects_unknown_protocols() {
        for line in [
            "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY \r\n",
            "PROXY X",
            "PROXY TCP44 ",
        ] {
            assert_eq!(malformed(line), "unknown protocol", "{line:?}");
        }
    }

    #[test]
    fn v1_rejects_wrong_field_counts() {
        for line in [
            "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            "PROXY TCP4 1.2.3.4\r\n",
            "PROXY TCP4\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        ] {
            assert_eq!(malformed(line), "wrong number of fields", "{line:?}");
        }
        assert_eq!(
            malformed("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "),
            "too many fields"
        );
    }

    #[test]
    fn v1_rejects_addresses_of_the_wrong_family() {
        let (src, dst) = ("invalid source address", "invalid destination address");
        for (line, reason) in [
            ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", src),
            ("PROXY TCP6 ::1 1.2.3.4 1 2\r\n", dst),
            ("PROXY TCP4 ::1 1.2.3.4 1 2\r\n", src),
            ("PROXY TCP4 1.2.3.4 1.2.3.256 1 2\r\n", dst),
            ("PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", src),
            ("PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", src),
            ("PROXY TCP6 fe80::1%1 ::1 1 2\r\n", src),
            ("PROXY TCP6 ::g ::1 1 2\r\n", src),
            ("PROXY TCP4 1.2.3.4 ::1", "unexpected character"),
        ] {
            assert_eq!(malformed(line), reason, "{line:?}");
        }
    }

    #[test]
    fn v1_rejects_bad_ports() {
        for port in [
            "65536", "99999", "080", "00", "+1", "-1", "1a", "123456", "0x10",
        ] {
            let src = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 2\r\n");
            let dst = format!("PROXY TCP4 1.2.3.4 5.6.7.8 1 {port}\r\n");
            assert!(parse(src.as_bytes()).is_err(), "{port}");
            assert!(parse(dst.as_bytes()).is_err(), "{port}");
        }
        assert_eq!(
            malformed("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
            "invalid source port"
        );
        assert_eq!(
            malformed("PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n"),
            "invalid destination port"
        );
        assert_eq!(
            malformed("PROXY TCP6 ::1 ::2 1 +2\r\n"),
            "invalid destination port"
        );
        let (header, _) = complete(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n");
        assert_eq!(header, proxy("1.2.3.4:0", "5.6.7.8:65535"));
    }

    #[test]
    fn v1_requires_crlf() {
        let reason = "unexpected character";
        assert_eq!(malformed("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nDATA"), reason);
        assert_eq!(malformed("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), reason);
        assert_eq!(
            malformed("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n"),
            "invalid destination port"
        );
    }

    #[test]
    fn v1_line_length_limit_is_107_bytes() {
        let padded = |len: usize| {
            let mut line = b"PROXY UNKNOWN ".to_vec();
            line.resize(len - 2, b'x');
            line.extend_from_slice(b"\r\n");
            line
        };
        assert_eq!(complete(&padded(107)), (ProxyHeader::Local, 107));
        assert_eq!(error(&padded(108)), ParseError::V1TooLong);
        assert_eq!(error(&padded(300)), ParseError::V1TooLong);
        // Known as soon as a CRLF can no longer fit.
        assert_eq!(error(&padded(108)[..106]), ParseError::V1TooLong);
        assert!(matches!(
            parse(&padded(108)[..105]),
            Ok(Parsed::Incomplete { .. })
        ));
    }

    #[test]
    fn v1_partial_garbage_fails_before_the_line_ends() {
        assert_eq!(malformed("PROXY TCP4 1.2.3.4 x"), "unexpected character");
        assert_eq!(malformed("PROXY TCP6 ::1 ::z"), "unexpected character");
        assert_eq!(malformed("PROXY TCPX"), "unknown protocol");
    }

    #[test]
    fn errors_have_readable_messages() {
        assert_eq!(
            ParseError::V1Malformed("invalid source port").to_string(),
            "malformed PROXY v1 header: invalid source port"
        );
        assert!(
            ParseError::NotProxyProtocol
                .to_string()
                .contains("not a PROXY")
        );
    }

    // ------------------------------------------------------------ prefixes

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let mut with_tlvs = encode(Version::V2, addr("[::1]:1"), addr("[::2]:2"));
        with_tlvs[15] += 8;
        with_tlvs.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x00]);
        let headers = [
            encode(
                Version::V1,
                addr("255.255.255.255:65535"),
                addr("0.0.0.0:0"),
            ),
            encode(
                Version::V1,
                addr("[2001:db8::1]:1"),
                addr("[::ffff:1.2.3.4]:2"),
            ),
            b"PROXY UNKNOWN\r\n".to_vec(),
            b"PROXY UNKNOWN whatever\r\n".to_vec(),
            encode(Version::V2, addr("1.2.3.4:1"), addr("5.6.7.8:2")),
            encode_v2_udp(addr("[::1]:1"), addr("[::2]:2")),
            with_tlvs,
            v2(0x20, 0x00, &[]),
            v2(0x21, 0x31, &[0; 216]),
        ];
        for header in headers {
            assert!(matches!(parse(&header), Ok(Parsed::Complete { .. })));
            assert_all_prefixes_incomplete(&header);
        }
    }

    // ------------------------------------------------------------ properties

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        ]
    }

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        (any_ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
    }

    fn same_family_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        (any_addr(), any_addr()).prop_filter("same family", |(a, b)| a.is_ipv4() == b.is_ipv4())
    }

    fn encoded(kind: u8, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        match kind % 3 {
            0 => encode(Version::V1, src, dst),
            1 => encode(Version::V2, src, dst),
            _ => encode_v2_udp(src, dst),
        }
    }

    fn noisy_input() -> impl Strategy<Value = Vec<u8>> {
        let tail = || proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            tail(),
            tail().prop_map(|t| [b"PROXY ".to_vec(), t].concat()),
            tail().prop_map(|t| [b"PROXY TCP4 ".to_vec(), t].concat()),
            tail().prop_map(|t| [V2_SIGNATURE.to_vec(), t].concat()),
            (0u8..3, tail())
                .prop_map(|(cmd, t)| [V2_SIGNATURE.to_vec(), vec![0x20 | cmd], t].concat()),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(buf in noisy_input()) {
            match parse(&buf) {
                Ok(Parsed::Complete { consumed, .. }) => {
                    prop_assert!(consumed >= V1_MIN_LEN && consumed <= buf.len());
                }
                Ok(Parsed::Incomplete { at_least }) => {
                    prop_assert!(at_least.is_some_and(|n| n >= 1 && buf.len() + n <= MAX_HEADER_LEN));
                }
                Err(_) => {}
            }
        }

        #[test]
        fn addresses_round_trip(kind in 0u8..3, (src, dst) in same_family_pair()) {
            let bytes = encoded(kind, src, dst);
            let expected = ProxyHeader::Proxy { source: src, destination: dst };
            prop_assert_eq!(complete(&bytes), (expected, bytes.len()));
        }

        #[test]
        fn mixed_families_round_trip_mapped(kind in 0u8..3, src in any_addr(), dst in any_addr()) {
            let (mapped_src, mapped_dst) = same_family(src, dst);
            prop_assert_eq!(mapped_src.is_ipv4(), mapped_dst.is_ipv4());
            let (header, _) = complete(&encoded(kind, src, dst));
            prop_assert_eq!(header, ProxyHeader::Proxy { source: mapped_src, destination: mapped_dst });
        }

        #[test]
        fn trailing_data_is_never_consumed(
            kind in 0u8..3,
            src in any_addr(),
            dst in any_addr(),
            data in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let header = encoded(kind, src, dst);
            let buf = [header.clone(), data].concat();
            prop_assert_eq!(complete(&buf).1, header.len());
        }

        #[test]
        fn prefixes_of_encoded_headers_are_incomplete(kind in 0u8..3, src in any_addr(), dst in any_addr()) {
            assert_all_prefixes_incomplete(&encoded(kind, src, dst));
        }
    }
}
