//! Money is an integer count of octas (1 APT = 10^8 octas), never a float: sums and budgets
//! must add up exactly, and the chain counts in octas too.

/// Octas in one APT.
pub const OCTAS_PER_APT: u64 = 100_000_000;

/// One APT in octas as i64, for budgets and prices.
pub const APT: i64 = OCTAS_PER_APT as i64;

/// What `gpu_seconds` cost at `price_per_gpu_hour` octas, rounded down to whole octas (the
/// provider is never paid a fraction the chain cannot send); negative inputs count as zero and a
/// product past `i64::MAX` saturates.
pub fn cost_octas(gpu_seconds: i64, price_per_gpu_hour: i64) -> i64 {
    let octas = i128::from(gpu_seconds.max(0)) * i128::from(price_per_gpu_hour.max(0)) / 3600;
    i64::try_from(octas).unwrap_or(i64::MAX)
}

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

    #[test]
    fn cost_rounds_down_and_never_overflows() {
        assert_eq!(cost_octas(3600, 1_000), 1_000);
        assert_eq!(cost_octas(1, 3_599), 0, "a fraction of an octa is not paid");
        assert_eq!(cost_octas(-5, 1_000), 0);
        assert_eq!(cost_octas(i64::MAX, i64::MAX), i64::MAX);
    }
}
