//! What the test node executes in place of a Move VM: APT transfers. An entry function is
//! decoded into the transfers it asks for, or into the status a real VM would fail it with;
//! the ledger then checks recipients and balances (see `ledger.rs`).

use aptos_sdk::AccountAddress;
use aptos_sdk::aptos_bcs;
use aptos_sdk::transaction::EntryFunction;
use aptos_sdk::types::TypeTag;
use serde::de::DeserializeOwned;

/// Gas units charged for every committed transaction, successful or not. A real APT transfer
/// costs about this much (more when it creates the recipient's account); the test node does
/// not meter, so billing code sees a realistic, predictable fee: `GAS_USED × gas_unit_price`.
pub const GAS_USED: u64 = 10;

/// The gas unit price the node recommends (`/estimate_gas_price`) and the minimum it accepts,
/// as on mainnet, testnet and a localnet.
pub const GAS_UNIT_PRICE: u64 = 100;

/// The largest `max_gas_amount` a real node accepts.
pub const MAX_GAS_AMOUNT: u64 = 2_000_000;

/// Framework modules a real chain has at 0x1; calling a missing function in one of them fails
/// with `FUNCTION_RESOLUTION_FAILURE`, calling into any other module with `LINKER_ERROR`.
const FRAMEWORK_MODULES: &[&str] = &[
    "account",
    "aptos_account",
    "aptos_coin",
    "coin",
    "fungible_asset",
    "object",
    "primary_fungible_store",
    "resource_account",
    "stake",
    "delegation_pool",
    "staking_contract",
    "vesting",
    "code",
    "multisig_account",
];

/// `vm_status` of a transfer whose amount (plus the fee) is above the sender's balance.
pub const EINSUFFICIENT_BALANCE: &str =
    "Move abort in 0x1::coin: EINSUFFICIENT_BALANCE(0x10006): Not enough coins to complete transaction";

/// `vm_status` of an APT transfer above the sender's balance where APT is a fungible asset
/// (current networks): the withdrawal from its primary store aborts.
pub const FA_EINSUFFICIENT_BALANCE: &str =
    "Move abort in 0x1::fungible_asset: EINSUFFICIENT_BALANCE(0x10004): Insufficient balance in the store";

/// `vm_status` of a transfer that fits the balance but leaves less than its gas fee: the
/// epilogue cannot charge the fee (code 1005 in category OUT_OF_RANGE) and the transfer is
/// undone.
pub const ECANT_PAY_GAS_DEPOSIT: &str =
    "Move abort in 0x1::transaction_validation: PROLOGUE_ECANT_PAY_GAS_DEPOSIT(0x203ed)";

/// Storage fee in octas of the primary store a transfer creates for a recipient that has none,
/// with metered gas: the order of what a real chain charges for a new state slot (about
/// 0.0005 APT), far more than the execution gas.
pub const NEW_STORE_STORAGE_FEE: u64 = 50_000;

/// `vm_status` of a transfer to an address where `0x1::account` refuses to create an account.
pub const ECANNOT_RESERVED_ADDRESS: &str = "Move abort in 0x1::account: ECANNOT_RESERVED_ADDRESS(0x10005): Account cannot be created at a reserved address";

const EMISMATCHING_LENGTHS: &str = "Move abort in 0x1::aptos_account: EMISMATCHING_RECIPIENTS_AND_AMOUNTS_LENGTH(0x10005): The lengths of the recipients and amounts lists don't match.";

/// The `vm_status` of a successful transaction.
pub const EXECUTED: &str = "Executed successfully";

/// `0x1::module::function` as the REST API writes it.
pub fn function_id(entry: &EntryFunction) -> String {
    format!("{}::{}", entry.module, entry.function)
}

/// True for the framework's reserved addresses 0x0–0xa, where the test node, like
/// `0x1::account::create_account`, creates no account and so accepts no transfer.
pub fn is_reserved(address: &AccountAddress) -> bool {
    let bytes = address.to_bytes();
    bytes[..31].iter().all(|b| *b == 0) && bytes[31] <= 0x0a
}

/// The transfers an entry function asks for, or the `vm_status` a real VM fails it with.
pub fn decode_transfers(entry: &EntryFunction) -> Result<Vec<(AccountAddress, u64)>, String> {
    let module = &entry.module;
    let framework = module.address == AccountAddress::ONE;
    let name = module.name.as_str();
    match (framework, name, entry.function.as_str()) {
        (true, "aptos_account", "transfer") => {
            expect_type_args(entry, 0)?;
            let [to, amount] = args::<2>(entry)?;
            Ok(vec![(arg(to)?, arg(amount)?)])
        }
        (true, "aptos_account", "batch_transfer") => {
            expect_type_args(entry, 0)?;
            let [recipients, amounts] = args::<2>(entry)?;
            let recipients: Vec<AccountAddress> = arg(recipients)?;
            let amounts: Vec<u64> = arg(amounts)?;
            if recipients.len() != amounts.len() {
                return Err(EMISMATCHING_LENGTHS.to_string());
            }
            Ok(recipients.into_iter().zip(amounts).collect())
        }
        (true, "coin", "transfer") => {
            expect_type_args(entry, 1)?;
            if !is_aptos_coin(&entry.type_args[0]) {
                // Any other coin's module is not on the test chain.
                return Err("LINKER_ERROR".to_string());
            }
            let [to, amount] = args::<2>(entry)?;
            Ok(vec![(arg(to)?, arg(amount)?)])
        }
        (true, module, _) if FRAMEWORK_MODULES.contains(&module) => {
            Err("FUNCTION_RESOLUTION_FAILURE".to_string())
        }
        _ => Err("LINKER_ERROR".to_string()),
    }
}

fn is_aptos_coin(tag: &TypeTag) -> bool {
    tag.to_string() == "0x1::aptos_coin::AptosCoin"
}

fn expect_type_args(entry: &EntryFunction, count: usize) -> Result<(), String> {
    if entry.type_args.len() == count { Ok(()) } else { Err("NUMBER_OF_TYPE_ARGUMENTS_MISMATCH".to_string()) }
}

fn args<const N: usize>(entry: &EntryFunction) -> Result<[&[u8]; N], String> {
    let args: Vec<&[u8]> = entry.args.iter().map(Vec::as_slice).collect();
    args.try_into().map_err(|_| "NUMBER_OF_ARGUMENTS_MISMATCH".to_string())
}

fn arg<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    aptos_bcs::from_bytes(bytes).map_err(|_| "FAILED_TO_DESERIALIZE_ARGUMENT".to_string())
}

/// The arguments as the REST API shows them in a payload's `arguments`; addresses without
/// leading zeros when `short`.
pub fn arguments_json(entry: &EntryFunction, short: bool) -> Vec<serde_json::Value> {
    let text = |a: &AccountAddress| if short { a.to_short_string() } else { a.to_string() };
    let decoded = match (entry.module.name.as_str(), entry.function.as_str()) {
        ("aptos_account" | "coin", "transfer") if entry.args.len() == 2 => {
            match (arg::<AccountAddress>(&entry.args[0]), arg::<u64>(&entry.args[1])) {
                (Ok(to), Ok(amount)) => Some(vec![
                    serde_json::Value::String(text(&to)),
                    serde_json::Value::String(amount.to_string()),
                ]),
                _ => None,
            }
        }
        ("aptos_account", "batch_transfer") if entry.args.len() == 2 => {
            match (arg::<Vec<AccountAddress>>(&entry.args[0]), arg::<Vec<u64>>(&entry.args[1])) {
                (Ok(to), Ok(amounts)) => Some(vec![
                    to.iter().map(text).collect(),
                    amounts.iter().map(ToString::to_string).collect(),
                ]),
                _ => None,
            }
        }
        _ => None,
    };
    decoded.unwrap_or_else(|| {
        entry
            .args
            .iter()
            .map(|bytes| serde_json::Value::String(format!("0x{}", hex::encode(bytes))))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(n: u64) -> AccountAddress {
        AccountAddress::from_hex(format!("{n:x}")).unwrap()
    }

    #[test]
    fn apt_transfer_decodes_recipient_and_amount() {
        let entry = EntryFunction::apt_transfer(address(0xbeef), 42).unwrap();
        assert_eq!(function_id(&entry), "0x1::aptos_account::transfer");
        assert_eq!(decode_transfers(&entry), Ok(vec![(address(0xbeef), 42)]));
    }

    #[test]
    fn batch_transfer_with_mismatched_lists_aborts() {
        let entry = EntryFunction::from_function_id(
            "0x1::aptos_account::batch_transfer",
            vec![],
            vec![
                aptos_bcs::to_bytes(&vec![address(0xb0b)]).unwrap(),
                aptos_bcs::to_bytes(&vec![1u64, 2]).unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(decode_transfers(&entry), Err(EMISMATCHING_LENGTHS.to_string()));
    }

    #[test]
    fn unknown_functions_fail_like_the_vm() {
        let missing_function =
            EntryFunction::from_function_id("0x1::aptos_account::steal", vec![], vec![]).unwrap();
        assert_eq!(decode_transfers(&missing_function), Err("FUNCTION_RESOLUTION_FAILURE".to_string()));
        let missing_module =
            EntryFunction::from_function_id("0xcafe::billing::settle", vec![], vec![]).unwrap();
        assert_eq!(decode_transfers(&missing_module), Err("LINKER_ERROR".to_string()));
    }

    #[test]
    fn reserved_addresses_are_the_framework_ones() {
        assert!(is_reserved(&AccountAddress::ZERO));
        assert!(is_reserved(&AccountAddress::ONE));
        assert!(is_reserved(&AccountAddress::A));
        assert!(!is_reserved(&address(0xb)));
    }
}
