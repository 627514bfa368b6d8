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

/// Makes an async function durable. See `runtara_sdk::durable` for the contract and the
/// shapes it supports.
///
/// Arguments: the first one (after `self`) is the idempotency key, and the only one; the
/// checkpoint id is `"{fn_name}::{key}"`. Each result is recorded with the function's
/// identity, `concat!(module_path!(), "::", fn_name)` (with the `Self` type's name
/// before `fn_name` for a method) or `name = "..."` (then the id uses the name's last
/// segment). With retries on (the default), every argument and an owned receiver are
/// cloned for each attempt, so they must be `Clone`, and `&mut` arguments and `&mut self`
/// are rejected; `max_retries = 0` lifts all of it. Patterns are accepted: `mut x`,
/// `ref x` keep their name in the expanded signature; `(a, b)`, `Point { x, y }` are
/// bound to a hygienic name (`arg1`, `point`) and destructured inside the body.
/// `crate = "path"` names the `runtara_sdk` crate when it is reached through a facade or
/// a renamed dependency.
#[proc_macro_attribute]
pub fn durable(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::durable(args.into(), item.into()).into()
}
