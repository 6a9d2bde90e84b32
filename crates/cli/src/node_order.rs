//! The order nodes are listed in: by id, numbers by value, so that a
//! StatefulSet's `kv-2` comes before `kv-10`.

use std::cmp::Ordering;

/// Compares node ids run by run: digit runs by numeric value (longer,
/// once leading zeros are dropped, is larger; ties by leading zeros),
/// everything else byte by byte.
pub(crate) fn natural(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_digits(a);
                let (db, rb) = split_digits(b);
                let (ta, tb) = (trim_zeros(da), trim_zeros(db));
                let order = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| da.len().cmp(&db.len()));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_by_value_and_the_rest_by_bytes() {
        let mut ids = vec![
            "node-10",
            "node-2",
            "kv-1",
            "node-1",
            "node-02",
            "a",
            "node-1b",
            "node-",
            "node-1a",
            "99999999999999999999999",
            "10",
        ];
        ids.sort_by(|a, b| natural(a, b));
        assert_eq!(
            ids,
            [
                "10",
                "99999999999999999999999",
                "a",
                "kv-1",
                "node-",
                "node-1",
                "node-1a",
                "node-1b",
                "node-2",
                "node-02",
                "node-10",
            ]
        );
        assert_eq!(natural("kv-7", "kv-7"), Ordering::Equal);
    }
}
