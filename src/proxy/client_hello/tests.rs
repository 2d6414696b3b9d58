//! The ClientHello reader on hand-built hellos, split every way, and on
//! arbitrary bytes.

use proptest::prelude::*;

use super::*;

/// A ClientHello body (after the handshake header) naming `sni` and offering `alpn`.
fn hello_body(sni: Option<&str>, alpn: &[&str]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0); // session id
    body.extend([0, 2, 0x13, 0x01]); // one cipher suite
    body.extend([1, 0]); // null compression
    let mut extensions = Vec::new();
    if let Some(name) = sni {
        let name = name.as_bytes();
        let entry_len = 3 + name.len();
        extensions.extend([0, 0]);
        extensions.extend(((entry_len + 2) as u16).to_be_bytes());
        extensions.extend((entry_len as u16).to_be_bytes());
        extensions.push(0);
        extensions.extend((name.len() as u16).to_be_bytes());
        extensions.extend(name);
    }
    if !alpn.is_empty() {
        let list: Vec<u8> = alpn
            .iter()
            .flat_map(|p| std::iter::once(p.len() as u8).chain(p.bytes()))
            .collect();
        extensions.extend([0, 16]);
        extensions.extend(((list.len() + 2) as u16).to_be_bytes());
        extensions.extend((list.len() as u16).to_be_bytes());
        extensions.extend(list);
    }
    extensions.extend([0, 43, 0, 3, 2, 3, 4]); // supported_versions: TLS 1.3
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    body
}

/// The handshake message: header and body.
fn handshake(body: &[u8]) -> Vec<u8> {
    let mut message = vec![1];
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    message
}

/// `message` in handshake records of at most `size` bytes each.
fn records(message: &[u8], size: usize) -> Vec<u8> {
    message
        .chunks(size)
        .flat_map(|chunk| {
            let mut record = vec![22, 3, 1];
            record.extend((chunk.len() as u16).to_be_bytes());
            record.extend(chunk);
            record
        })
        .collect()
}

fn wire(sni: Option<&str>, alpn: &[&str], record_size: usize) -> Vec<u8> {
    records(&handshake(&hello_body(sni, alpn)), record_size)
}

fn hello(sni: Option<&str>, alpn: &[&str]) -> Preread {
    Preread::Hello(ClientHello {
        server_name: sni.map(str::to_ascii_lowercase),
        alpn: alpn.iter().map(|p| p.to_string()).collect(),
    })
}

#[test]
fn reads_the_server_name_and_alpn_of_a_hello_in_one_record() {
    let bytes = wire(Some("DB1.Example.com"), &["h2", "http/1.1"], 16384);
    assert_eq!(
        parse(&bytes),
        hello(Some("db1.example.com"), &["h2", "http/1.1"])
    );
}

#[test]
fn a_hello_without_extensions_or_server_name_has_no_name() {
    assert_eq!(parse(&wire(None, &[], 16384)), hello(None, &[]));
    let mut body = hello_body(None, &[]);
    body.truncate(2 + 32 + 1 + 4 + 2);
    assert_eq!(parse(&records(&handshake(&body), 100)), hello(None, &[]));
}

#[test]
fn every_prefix_is_incomplete_and_the_whole_is_read_whatever_the_records() {
    for size in [1, 2, 7, 100, 16384] {
        let bytes = wire(Some("a.example.com"), &["h2"], size);
        for end in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..end]),
                Preread::Incomplete,
                "size {size}, end {end}"
            );
        }
        assert_eq!(parse(&bytes), hello(Some("a.example.com"), &["h2"]));
    }
}

#[test]
fn other_protocols_are_not_tls_and_sslv2_is_refused() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Preread::NotTls);
    assert_eq!(parse(&[0, 0, 0, 8, 4, 210, 22, 47]), Preread::NotTls); // PostgreSQL SSLRequest
    assert!(matches!(
        parse(&[0x80, 0x2e, 0x01, 0x00, 0x02]),
        Preread::Invalid(_)
    ));
    assert_eq!(parse(&[]), Preread::Incomplete);
}

#[test]
fn malformed_and_oversized_hellos_are_invalid() {
    let too_big = [22, 3, 1, 0, 4, 1, 0x10, 0, 0];
    assert_eq!(
        parse(&too_big),
        Preread::Invalid("a ClientHello larger than 16 KiB")
    );
    assert!(matches!(parse(&[22, 3, 1, 0x50, 0]), Preread::Invalid(_)));
    assert!(matches!(
        parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
        Preread::Invalid(_)
    ));
    assert!(matches!(parse(&[22, 9, 1, 0, 4]), Preread::Invalid(_)));
    let mut body = hello_body(Some("a.example.com"), &[]);
    body.push(0); // a byte after the extensions
    assert!(matches!(
        parse(&records(&handshake(&body), 50)),
        Preread::Invalid(_)
    ));
    let bad_name = wire(Some("bad name"), &[], 16384);
    assert!(matches!(parse(&bad_name), Preread::Invalid(_)));
}

#[test]
fn a_hello_split_into_tiny_records_beyond_the_read_ahead_is_refused() {
    let small = records(&handshake(&hello_body(Some("x.example.com"), &[])), 1);
    assert_eq!(parse(&small), hello(Some("x.example.com"), &[]));
    let padded: Vec<u8> = {
        let mut body = hello_body(Some("x.example.com"), &[]);
        let extensions_len = u16::from_be_bytes([body[41], body[42]]) as usize;
        let padding = 4000;
        body[41..43].copy_from_slice(&((extensions_len + 4 + padding) as u16).to_be_bytes());
        body.extend([0, 21]);
        body.extend((padding as u16).to_be_bytes());
        body.extend(vec![0u8; padding]);
        records(&handshake(&body), 1)
    };
    assert_eq!(
        parse(&padded),
        Preread::Invalid("no complete ClientHello within 16 KiB")
    );
}

proptest! {
    #[test]
    fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_bytes_that_start_like_a_hello(
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
        length in 0u16..3000,
    ) {
        let mut bytes = vec![22, 3, 1];
        bytes.extend(length.to_be_bytes());
        bytes.push(1);
        bytes.extend(tail);
        let _ = parse(&bytes);
    }

    #[test]
    fn any_record_split_and_trailing_bytes_read_the_same(
        size in 1usize..400,
        label in "[a-z0-9]{1,20}",
        trailing in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let name = format!("{label}.example.com");
        let mut bytes = wire(Some(&name), &["h2"], size);
        bytes.extend(trailing);
        prop_assert_eq!(parse(&bytes), hello(Some(&name), &["h2"]));
    }

    #[test]
    fn flipping_a_byte_never_panics(index in 0usize..200, value in any::<u8>()) {
        let mut bytes = wire(Some("db.example.com"), &["h2"], 30);
        let i = index % bytes.len();
        bytes[i] = value;
        let _ = parse(&bytes);
    }
}
