//! Kubernetes quantities (`10Gi`, `500M`, `1.5Ti`) as bytes, for the
//! planner's room check. Pure; `None` for anything it cannot read (the
//! CRD's `isQuantity` rule keeps such specs out).

/// Bytes in `quantity`, rounded down.
#[must_use]
pub fn bytes(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole.checked_mul(multiplier)?;
    // The fraction exactly: multiplier * digits / 10^len, in u128.
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let len = u32::try_from(fraction.len()).ok()?;
        let denominator = 10u128.checked_pow(len)?;
        let part = u128::from(multiplier).checked_mul(digits)? / denominator;
        total = total.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn binary_decimal_and_fractional_quantities() {
        assert_eq!(bytes("10Gi"), Some(10 << 30));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("1024"), Some(1024));
        assert_eq!(bytes(".5Ki"), Some(512));
        for bad in ["", "Gi", "10GB", "1..5Gi", "-1Gi", "99999999999Pi"] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
    }
}
