//! Unknown keys: the nearest valid key as a suggestion ("did you mean
//! `connect_timeout`?"), or the table's valid keys when none is close.
//!
//! This file owns rewording serde's "unknown field" message. It does not
//! decide what is unknown: the raw structs in `file.rs` do.

/// Our wording for serde's ``unknown field `x`, expected one of `a`, `b` ``,
/// or `None` when `message` is not about an unknown field.
pub fn unknown_key_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, expected) = rest.split_once('`')?;
    let valid = quoted_names(expected);
    let near = nearest(key, &valid).map_or_else(|| containing(key, &valid), |k| vec![k]);
    Some(match near.as_slice() {
        [one] => format!("unknown key `{key}`; did you mean `{one}`?"),
        [first, second] => {
            format!("unknown key `{key}`; did you mean `{first}` or `{second}`?")
        }
        [first, second, third] => {
            format!("unknown key `{key}`; did you mean `{first}`, `{second}` or `{third}`?")
        }
        _ if valid.is_empty() => format!("unknown key `{key}`; this table takes no keys"),
        _ => {
            let listed: Vec<String> = valid.iter().map(|k| format!("`{k}`")).collect();
            format!(
                "unknown key `{key}`; valid keys here: {}",
                listed.join(", ")
            )
        }
    })
}

/// The valid keys that contain `key` (e.g. `timeout` in `connect_timeout`),
/// when there are at most three of them.
fn containing<'k>(key: &str, valid: &[&'k str]) -> Vec<&'k str> {
    if key.len() < 4 {
        return Vec::new();
    }
    let found: Vec<&str> = valid.iter().copied().filter(|k| k.contains(key)).collect();
    if found.len() <= 3 { found } else { Vec::new() }
}

/// The names between backticks in `text`.
fn quoted_names(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The valid key closest to `key` by edit distance, if it is close enough to
/// be a typo: at most a third of the key's length (at least 1) apart.
fn nearest<'k>(key: &str, valid: &[&'k str]) -> Option<&'k str> {
    let limit = (key.chars().count() / 3).max(1);
    valid
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "expected one of `name`, `protocol`, `connect_timeout`, \
                           `connect_attempts`, `idle_timeout`";

    fn reword(key: &str, expected: &str) -> Option<String> {
        unknown_key_message(&format!("unknown field `{key}`, {expected}"))
    }

    #[test]
    fn a_typo_gets_the_nearest_key() {
        assert_eq!(
            reword("conect_timeout", SERVICE).as_deref(),
            Some("unknown key `conect_timeout`; did you mean `connect_timeout`?")
        );
        assert_eq!(
            reword("idle_timeuot", SERVICE).as_deref(),
            Some("unknown key `idle_timeuot`; did you mean `idle_timeout`?")
        );
        assert_eq!(
            reword("nmae", SERVICE).as_deref(),
            Some("unknown key `nmae`; did you mean `name`?")
        );
    }

    #[test]
    fn a_part_of_one_or_two_keys_gets_them() {
        assert_eq!(
            reword("timeout", SERVICE).as_deref(),
            Some("unknown key `timeout`; did you mean `connect_timeout` or `idle_timeout`?")
        );
        assert_eq!(
            reword("attempts", SERVICE).as_deref(),
            Some("unknown key `attempts`; did you mean `connect_attempts`?")
        );
    }

    #[test]
    fn a_key_near_nothing_gets_the_list() {
        assert_eq!(
            reword("colour", SERVICE).as_deref(),
            Some(
                "unknown key `colour`; valid keys here: `name`, `protocol`, \
                 `connect_timeout`, `connect_attempts`, `idle_timeout`"
            )
        );
        assert_eq!(
            reword("x", "expected `listen` or `token`").as_deref(),
            Some("unknown key `x`; valid keys here: `listen`, `token`")
        );
    }

    #[test]
    fn other_messages_are_left_alone() {
        assert_eq!(unknown_key_message("invalid type: integer `5`"), None);
    }
}
