//! Kubernetes resource quantities (`500m`, `4Gi`, `1e3`) as numbers: how the agent checks a
//! unit's CPU, memory and disk against its provider's caps and how placement compares them with
//! what a member advertises, the same way on both sides.

/// A quantity that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a number with a known suffix.
    #[error(
        "{0:?} is not a Kubernetes quantity (a number with an optional suffix, such as 500m, 2, 4Gi or 10G)"
    )]
    Malformed(String),
}

/// Splits `12.5Gi` into the number and its multiplier.
fn split_quantity(text: &str) -> Result<(f64, f64), QuantityError> {
    let text = text.trim();
    let malformed = || QuantityError::Malformed(text.to_string());
    const SUFFIXES: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            let n = number.parse::<f64>().map_err(|_| malformed())?;
            return if n.is_finite() && n >= 0.0 { Ok((n, factor)) } else { Err(malformed()) };
        }
    }
    // Plain numbers and decimal exponents (`1e3`) parse as floats directly.
    let n = text.parse::<f64>().map_err(|_| malformed())?;
    if n.is_finite() && n >= 0.0 { Ok((n, 1.0)) } else { Err(malformed()) }
}

/// A quantity in whole units (bytes, GPUs), rounded up as Kubernetes does (`1.5` GPUs is never 1).
pub fn parse_units(text: &str) -> Result<i64, QuantityError> {
    let (n, factor) = split_quantity(text)?;
    Ok((n * factor).ceil() as i64)
}

/// A quantity in thousandths (CPU millicores), rounded up.
pub fn parse_milli(text: &str) -> Result<i64, QuantityError> {
    let (n, factor) = split_quantity(text)?;
    Ok((n * factor * 1000.0).ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_in_every_form_kubernetes_writes() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("2"), Ok(2000));
        assert_eq!(parse_milli("1.5"), Ok(1500));
        assert_eq!(parse_units("2048Gi"), Ok(2048 * 1024 * 1024 * 1024));
        assert_eq!(parse_units("500M"), Ok(500_000_000));
        assert_eq!(parse_units("1e3"), Ok(1000));
        assert_eq!(parse_units("2E"), Ok(2_000_000_000_000_000_000));
        assert_eq!(parse_units("8"), Ok(8));
        for bad in ["eight", "", "-1", "4Gb", "NaN"] {
            assert!(parse_units(bad).is_err(), "{bad:?}");
        }
    }
}
