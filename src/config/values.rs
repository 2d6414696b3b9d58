//! Checks of single values: integer ranges, durations, named choices, CIDRs
//! and Maglev table sizes.
//!
//! Each function is pure: it takes the value as written and returns the
//! checked value or the message saying what is wrong and what is expected.
//! Where the value is in the file, and reporting, belong to `validate.rs`.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnet::IpNet;

/// Largest Maglev lookup table accepted.
pub const MAX_TABLE_SIZE: i64 = 10_000_019;

/// Ranges whose upper end is at least this are described as open-ended.
const OPEN_ENDED: i64 = u32::MAX as i64;

/// `value` if it lies in `range`, else a message giving the range.
pub fn check_int(value: i64, range: &RangeInclusive<i64>) -> Result<i64, String> {
    if range.contains(&value) {
        return Ok(value);
    }
    let (min, max) = (*range.start(), *range.end());
    Err(if max < OPEN_ENDED {
        format!("must be between {min} and {max}, got {value}")
    } else if value > max {
        format!("must be at most {max}, got {value}")
    } else if min == 0 {
        format!("must not be negative, got {value}")
    } else {
        format!("must be at least {min}, got {value}")
    })
}

/// Longest duration any key accepts: 30 days. Timers are formed by adding a
/// duration to the current time, and nothing a load balancer waits for is
/// longer.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Parses a duration such as `"250ms"`, `"2s"` or `"1m30s"`, at most
/// [`MAX_DURATION`]; zero is refused unless `zero_allowed`.
pub fn parse_duration(text: &str, zero_allowed: bool) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| {
        format!(
            "invalid duration \"{text}\" ({e}); expected a number and a unit, \
             e.g. \"250ms\", \"2s\", \"1h\" or \"1m30s\""
        )
    })?;
    if duration.is_zero() && !zero_allowed {
        return Err(format!("must be greater than 0, got \"{text}\""));
    }
    if duration > MAX_DURATION {
        return Err(format!(
            "must be at most 30 days (\"720h\"), got \"{text}\""
        ));
    }
    Ok(duration)
}

/// The value named `text` among `choices`, or a message listing them.
pub fn parse_choice<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            format!("must be one of {}; got \"{text}\"", names.join(", "))
        })
}

/// A network in CIDR notation; a bare address means just that host. Host
/// bits set after the prefix (`10.1.2.3/8`) are refused: which network was
/// meant is a guess.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "invalid CIDR \"{text}\": expected a network such as \"10.0.0.0/8\" or \
                 \"2001:db8::/32\", or a single address such as \"192.0.2.7\""
            )
        })?;
    if net.addr() != net.network() {
        return Err(format!(
            "invalid CIDR \"{text}\": host bits are set after the /{} prefix; did you mean \
             \"{}\" (the network), or \"{}\" (the one address)?",
            net.prefix_len(),
            net.trunc(),
            net.addr()
        ));
    }
    Ok(net)
}

/// A Maglev table size: a prime, at most [`MAX_TABLE_SIZE`], and at least
/// the number of backends.
pub fn check_table_size(value: i64, backends: usize) -> Result<usize, String> {
    if value > MAX_TABLE_SIZE {
        return Err(format!(
            "must be a prime of at most {MAX_TABLE_SIZE}, got {value}"
        ));
    }
    if !is_prime(value) {
        let hint = match next_prime(value) {
            Some(p) if p <= MAX_TABLE_SIZE => format!(" (the next prime is {p})"),
            _ => String::new(),
        };
        return Err(format!("must be a prime number, got {value}{hint}"));
    }
    let size = usize::try_from(value).unwrap_or(usize::MAX);
    if size < backends {
        return Err(format!(
            "must be at least the number of backends ({backends}), got {value}"
        ));
    }
    Ok(size)
}

pub fn is_prime(n: i64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d <= n / d {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// The smallest prime larger than `n`, for hints.
fn next_prime(n: i64) -> Option<i64> {
    let start = n.max(1).checked_add(1)?;
    (start..=start.saturating_add(10_000)).find(|&c| is_prime(c))
}

/// A checked non-negative integer as `usize`.
pub fn as_usize(value: i64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// A checked integer within `u32` as `u32`.
pub fn as_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Bytes written as hex digits, e.g. `"0d0a"` or `"de ad be ef"` (spaces allowed).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&digits).map_err(|e| {
        format!("invalid hex \"{text}\" ({e}); expected pairs of hex digits, e.g. \"0d0a\"")
    })
}

/// An HTTP status range: `"200"` or `"200-399"`, within 100..=599.
pub fn parse_status_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let invalid = || {
        format!(
            "invalid status range \"{text}\": expected a status or a range of statuses \
             between 100 and 599, e.g. \"200\" or \"200-399\""
        )
    };
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let low: u16 = low.trim().parse().map_err(|_| invalid())?;
    let high: u16 = high.trim().parse().map_err(|_| invalid())?;
    if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
        return Err(invalid());
    }
    Ok(low..=high)
}

/// A DNS name to query, e.g. `"example.com"` (a trailing dot is allowed):
/// labels of 1 to 63 bytes, at most 253 in all.
pub fn parse_dns_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    let labels_ok = name.split('.').all(|l| (1..=63).contains(&l.len()));
    if name.is_empty() || name.len() > 253 || !labels_ok || !name.is_ascii() {
        return Err(format!(
            "invalid DNS name \"{text}\": expected dot-separated ASCII labels of 1 to 63 \
             characters, at most 253 in all, e.g. \"example.com\""
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_messages_depend_on_the_range() {
        assert_eq!(check_int(5, &(1..=1000)), Ok(5));
        assert_eq!(
            check_int(0, &(1..=1000)).unwrap_err(),
            "must be between 1 and 1000, got 0"
        );
        assert_eq!(
            check_int(-1, &(0..=i64::MAX)).unwrap_err(),
            "must not be negative, got -1"
        );
        assert_eq!(
            check_int(0, &(1..=i64::MAX)).unwrap_err(),
            "must be at least 1, got 0"
        );
        assert_eq!(
            check_int(1 << 40, &(1..=OPEN_ENDED)).unwrap_err(),
            "must be at most 4294967295, got 1099511627776"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("250ms", false),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("1m30s", false), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s", true), Ok(Duration::ZERO));
        assert_eq!(parse_duration("720h", false), Ok(MAX_DURATION));
        assert_eq!(
            parse_duration("18446744073709551615s", false).unwrap_err(),
            "must be at most 30 days (\"720h\"), got \"18446744073709551615s\""
        );
        assert_eq!(
            parse_duration("720h 1ms", true).unwrap_err(),
            "must be at most 30 days (\"720h\"), got \"720h 1ms\""
        );
        assert_eq!(
            parse_duration("0s", false).unwrap_err(),
            "must be greater than 0, got \"0s\""
        );
        assert_eq!(
            parse_duration("5", false).unwrap_err(),
            "invalid duration \"5\" (time unit needed, for example 5sec or 5ms); \
             expected a number and a unit, e.g. \"250ms\", \"2s\", \"1h\" or \"1m30s\""
        );
    }

    #[test]
    fn choices() {
        let choices = [("tcp", 1), ("udp", 2)];
        assert_eq!(parse_choice("udp", &choices), Ok(2));
        assert_eq!(
            parse_choice("tpc", &choices).unwrap_err(),
            "must be one of \"tcp\", \"udp\"; got \"tpc\""
        );
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_cidr("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert_eq!(
            parse_cidr("10.1.2.3/8").unwrap_err(),
            "invalid CIDR \"10.1.2.3/8\": host bits are set after the /8 prefix; did you mean \
             \"10.0.0.0/8\" (the network), or \"10.1.2.3\" (the one address)?"
        );
        assert!(parse_cidr("2001:db8::1/32").is_err());
        assert!(parse_cidr("10.1.2.3/32").is_ok());
        assert!(parse_cidr("").is_err());
    }

    #[test]
    fn table_sizes() {
        assert_eq!(check_table_size(65537, 3), Ok(65537));
        assert_eq!(check_table_size(MAX_TABLE_SIZE, 3), Ok(10_000_019));
        assert_eq!(
            check_table_size(65536, 3).unwrap_err(),
            "must be a prime number, got 65536 (the next prime is 65537)"
        );
        assert_eq!(
            check_table_size(-4, 3).unwrap_err(),
            "must be a prime number, got -4 (the next prime is 2)"
        );
        assert_eq!(
            check_table_size(10_000_020, 3).unwrap_err(),
            "must be a prime of at most 10000019, got 10000020"
        );
        assert_eq!(
            check_table_size(3, 5).unwrap_err(),
            "must be at least the number of backends (5), got 3"
        );
    }

    #[test]
    fn primes() {
        let small: Vec<i64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537));
        assert!(is_prime(MAX_TABLE_SIZE));
        assert_eq!(next_prime(i64::MAX), None);
    }
}
