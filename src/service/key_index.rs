//! Where each backend of a generation sits, by identity (its address), so that a
//! reload matches two generations in linear time — one hash lookup per backend,
//! never a scan of the other list — and a session that follows a reload can find
//! the backends it already tried.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// The position of every key of a list.
#[derive(Debug)]
pub struct KeyIndex<K> {
    positions: HashMap<K, usize>,
    len: usize,
}

/// How a next list relates to a previous one, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    /// For each entry of the next list, its position in the previous one.
    pub previous_position: Vec<Option<usize>>,
    /// Positions in the previous list of the keys the next one does not have.
    pub missing: Vec<usize>,
}

impl<K: Hash + Eq> KeyIndex<K> {
    /// Indexes `keys` (unique; for a repeated key the first position counts).
    pub fn new(keys: impl IntoIterator<Item = K>) -> KeyIndex<K> {
        let mut positions = HashMap::new();
        let mut len = 0;
        for (position, key) in keys.into_iter().enumerate() {
            positions.entry(key).or_insert(position);
            len = position + 1;
        }
        KeyIndex { positions, len }
    }

    /// Where `key` is, if present.
    pub fn position<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.positions.get(key).copied()
    }

    /// Matches `next` (keys in their order) against this index.
    pub fn match_next<'a, Q>(&self, next: impl IntoIterator<Item = &'a Q>) -> KeyMatch
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'a,
    {
        let mut kept = vec![false; self.len];
        let previous_position: Vec<Option<usize>> = next
            .into_iter()
            .map(|key| {
                let found = self.position(key);
                if let Some(i) = found {
                    kept[i] = true;
                }
                found
            })
            .collect();
        let missing = (0..self.len).filter(|&i| !kept[i]).collect();
        KeyMatch {
            previous_position,
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::hash::Hasher;

    use super::*;

    thread_local! {
        static COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    /// A key that counts how often it is compared.
    #[derive(Debug)]
    struct Counted(u32);

    impl PartialEq for Counted {
        fn eq(&self, other: &Counted) -> bool {
            COMPARISONS.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }

    impl Eq for Counted {}

    impl Hash for Counted {
        fn hash<H: Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    #[test]
    fn matches_kept_added_and_missing_keys() {
        let index = KeyIndex::new(["a", "b", "c"].map(String::from));
        let matched = index.match_next(["c", "x", "a"]);
        assert_eq!(matched.previous_position, [Some(2), None, Some(0)]);
        assert_eq!(matched.missing, [1]);
        assert_eq!(index.position("b"), Some(1));
        assert_eq!(index.position("x"), None);
    }

    #[test]
    fn matching_twenty_thousand_keys_costs_a_comparison_or_so_per_key() {
        const N: u32 = 20_000;
        COMPARISONS.with(|c| c.set(0));
        // A quarter removed, a quarter added, the rest kept.
        let index = KeyIndex::new((0..N).map(Counted));
        let next: Vec<Counted> = (N / 4..N + N / 4).map(Counted).collect();
        let matched = index.match_next(next.iter());
        let comparisons = COMPARISONS.with(Cell::get);
        assert_eq!(matched.missing.len(), (N / 4) as usize);
        let kept = matched.previous_position.iter().flatten().count();
        assert_eq!(kept, (N - N / 4) as usize);
        // A nested scan would compare about N * N / 2 = 200,000,000 times.
        assert!(
            comparisons <= 3 * N as usize,
            "{comparisons} comparisons for {N} keys"
        );
    }
}
