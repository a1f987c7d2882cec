//! Money is an integer count of octas (1 APT = 10^8 octas), never a float: sums and budgets
//! must add up exactly, and the chain counts in octas too.

/// Octas in one APT.
pub const OCTAS_PER_APT: u64 = 100_000_000;

/// An amount of octas as a person reads it, e.g. `1.25 APT`, without rounding: trailing zeros
/// of the fraction are dropped, every significant digit is kept.
pub fn format_apt(octas: u64) -> String {
    let whole = octas / OCTAS_PER_APT;
    let fraction = octas % OCTAS_PER_APT;
    if fraction == 0 {
        return format!("{whole} APT");
    }
    let digits = format!("{fraction:08}");
    format!("{whole}.{} APT", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_and_fractional_amounts_exactly() {
        assert_eq!(format_apt(0), "0 APT");
        assert_eq!(format_apt(OCTAS_PER_APT), "1 APT");
        assert_eq!(format_apt(125_000_000), "1.25 APT");
        assert_eq!(format_apt(1), "0.00000001 APT");
        assert_eq!(format_apt(u64::MAX), "184467440737.09551615 APT");
    }
}
