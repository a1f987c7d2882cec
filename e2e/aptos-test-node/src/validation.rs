//! Why a node refuses a transaction at submission: the subset of the Move VM's validation
//! status codes (`move-core-types` `StatusCode`, numbers 0–999) the test node can produce.
//! A real node answers them with HTTP 400, `error_code` `vm_error`, the number in
//! `vm_error_code`, and the message `Invalid transaction: Type: Validation Code: NAME`.

/// A validation status code, named and numbered as the Move VM names and numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum ValidationStatus {
    INVALID_SIGNATURE,
    INVALID_AUTH_KEY,
    SEQUENCE_NUMBER_TOO_OLD,
    INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE,
    TRANSACTION_EXPIRED,
    MAX_GAS_UNITS_EXCEEDS_MAX_GAS_UNITS_BOUND,
    GAS_UNIT_PRICE_BELOW_MIN_BOUND,
    BAD_CHAIN_ID,
}

impl ValidationStatus {
    /// The number a real node puts in `vm_error_code`.
    pub fn code(self) -> u64 {
        match self {
            Self::INVALID_SIGNATURE => 1,
            Self::INVALID_AUTH_KEY => 2,
            Self::SEQUENCE_NUMBER_TOO_OLD => 3,
            Self::INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE => 5,
            Self::TRANSACTION_EXPIRED => 6,
            Self::MAX_GAS_UNITS_EXCEEDS_MAX_GAS_UNITS_BOUND => 13,
            Self::GAS_UNIT_PRICE_BELOW_MIN_BOUND => 15,
            Self::BAD_CHAIN_ID => 23,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::INVALID_SIGNATURE => "INVALID_SIGNATURE",
            Self::INVALID_AUTH_KEY => "INVALID_AUTH_KEY",
            Self::SEQUENCE_NUMBER_TOO_OLD => "SEQUENCE_NUMBER_TOO_OLD",
            Self::INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE => "INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE",
            Self::TRANSACTION_EXPIRED => "TRANSACTION_EXPIRED",
            Self::MAX_GAS_UNITS_EXCEEDS_MAX_GAS_UNITS_BOUND => "MAX_GAS_UNITS_EXCEEDS_MAX_GAS_UNITS_BOUND",
            Self::GAS_UNIT_PRICE_BELOW_MIN_BOUND => "GAS_UNIT_PRICE_BELOW_MIN_BOUND",
            Self::BAD_CHAIN_ID => "BAD_CHAIN_ID",
        }
    }

    /// The `message` of a real node's 400 answer.
    pub fn message(self) -> String {
        format!("Invalid transaction: Type: Validation Code: {}", self.name())
    }
}
