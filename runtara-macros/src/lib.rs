//! The `#[durable]` attribute of Runtara. Use it through `runtara_sdk::durable`; the
//! contract is documented there.
//!
//! `args` parses the attribute, `parse` gives a typed view of the function, `validate`
//! holds every check, and `expand` generates the code.

mod args;
mod expand;
mod parse;
mod validate;

use proc_macro::TokenStream;

/// Makes an async function durable. See `runtara_sdk::durable` for the contract.
///
/// Arguments: the first one (after `self`) is the idempotency key, and the only one; the
/// checkpoint id is `"{fn_name}::{key}"`. Each result is recorded with the function's
/// identity, `concat!(module_path!(), "::", fn_name)` or `name = "..."` (then the id
/// uses the name's last segment). With retries on (the default), every argument is cloned for each
/// attempt, so owned arguments must be `Clone`, `&mut` arguments are rejected and methods
/// must take `&self`; `max_retries = 0` lifts all three. Patterns (`mut x`, `(a, b)`,
/// `Point { x, y }`) are accepted: they are bound to `__runtara_argN` in the expanded
/// signature and destructured inside the body.
#[proc_macro_attribute]
pub fn durable(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::durable(args.into(), item.into()).into()
}
