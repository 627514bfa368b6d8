//! Code generation for `#[durable]`. Runtime items are named only through
//! `::runtara_sdk::__private`, locals as `__runtara_*`.
//!
//! ```text
//! #[durable(max_retries = 2, delay = 10)]
//! pub async fn charge(key: String, (a, b): (u8, u8)) -> Result<Receipt, MyError> { BODY }
//! ```
//! becomes
//! ```text
//! pub async fn charge(key: String, __runtara_arg1: (u8, u8)) -> Result<Receipt, MyError> {
//!     let __runtara_checkpoint_id = __private::checkpoint_id("charge", &key);
//!     let __runtara_producer: &'static str = concat!(module_path!(), "::", "charge");
//!     __private::run_durable(
//!         __runtara_producer,
//!         __runtara_checkpoint_id,
//!         __private::RetryPolicy { max_retries: 2, strategy: __private::Strategy::ExponentialBackoff, delay_ms: 10 },
//!         |__runtara_error: &<Result<Receipt, MyError> as __private::ResultParts>::Err| {
//!             use __private::RetryFallback as _;
//!             __private::Classify(__runtara_error).retryable()
//!         },
//!         || {
//!             let key = __private::clone_argument(&key);
//!             let __runtara_arg1 = __private::clone_argument(&__runtara_arg1);
//!             async move {
//!                 let _ = &key;
//!                 let (a, b) = __runtara_arg1;
//!                 let __runtara_ret: Result<Receipt, MyError> = { BODY };
//!                 __runtara_ret
//!             }
//!         },
//!     )
//!     .await
//! }
//! ```
//! `return` and `?` in `BODY` leave the attempt's `async` block, as they would leave the
//! function. With `max_retries = 0` the same `async` block runs once through
//! `run_durable_once`, without clones. With `name = "billing::charge"` the producer is that
//! name and the checkpoint id names its last segment (`"charge::{key}"`).
//!
//! Spans: the `run_durable` call and its `.await` are spanned on the return type, so an
//! unmet bound on `T` or `E` is reported once, there; each clone is spanned on its
//! argument, and the key's `&dyn Display` coercion on the key.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, PatIdent};

use crate::args::DurableArgs;
use crate::parse::DurableFn;
use crate::validate::validate;

/// Expands `#[durable(args)] item`. On any error, emits the item unchanged plus the
/// errors, so the rest of the crate still type-checks (tokio-macros does the same).
pub(crate) fn durable(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed_args = syn::parse2::<DurableArgs>(args);
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let mut error = syn::Error::new(
                error.span(),
                format!("`#[durable]` applies to an `async fn` with a body: {error}"),
            );
            if let Err(args_error) = parsed_args {
                error.combine(args_error);
            }
            return with_errors(item, error);
        }
    };
    let view = DurableFn::new(&function);
    let retries = parsed_args.as_ref().ok().map(DurableArgs::retries);
    let checked = validate(&view, retries);
    match (parsed_args, checked) {
        (Ok(args), Ok(())) => generate(&view, &args),
        (Err(mut error), Err(more)) => {
            error.combine(more);
            with_errors(item, error)
        }
        (Err(error), _) | (_, Err(error)) => with_errors(item, error),
    }
}

fn with_errors(item: TokenStream, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    quote! { #item #errors }
}

/// How one argument reaches the body.
struct Binding<'a> {
    /// Its name in the expanded signature: the user's, or `__runtara_argN`.
    name: Ident,
    /// The user's pattern, destructured from `name` inside the body, when it is not a
    /// plain name (`mut x`, `(a, b)`, `Point { x, y }`, `_`, …).
    pattern: Option<&'a Pat>,
    /// Where errors about this argument point: its type (with the name, rustc underlines
    /// `name: Type`).
    span: Span,
}

fn generate(view: &DurableFn<'_>, args: &DurableArgs) -> TokenStream {
    let item = view.item;

    let bindings: Vec<Binding<'_>> = view
        .arguments
        .iter()
        .enumerate()
        .map(|(index, argument)| {
            let (name, pattern) = match argument.name {
                Some(name) => (name.clone(), None),
                None => (
                    Ident::new(&format!("__runtara_arg{index}"), argument.node.pat.span()),
                    Some(&*argument.node.pat),
                ),
            };
            Binding {
                name,
                pattern,
                span: argument.node.ty.span(),
            }
        })
        .collect();

    // The expanded signature binds every argument to a plain name.
    let mut sig = item.sig.clone();
    let mut names = bindings.iter();
    for input in &mut sig.inputs {
        if let FnArg::Typed(typed) = input {
            if let Some(binding) = names.next().filter(|b| b.pattern.is_some()) {
                *typed.pat = Pat::Ident(PatIdent {
                    attrs: Vec::new(),
                    by_ref: None,
                    mutability: None,
                    ident: binding.name.clone(),
                    subpat: None,
                });
            }
        }
    }

    let (Some(ret), Some(key)) = (view.output, bindings.first()) else {
        // `validate` guarantees both; stay soft rather than panic.
        return item.to_token_stream();
    };
    let key_ident = &key.name;
    let fn_name = item.sig.ident.unraw().to_string();
    // The function's identity, recorded with each result: `name = "..."`, else its module
    // path. The checkpoint id names the identity's last segment (the function's name).
    let (id_name, producer) = match &args.name {
        Some(name) => {
            let last = name.rsplit("::").next().unwrap_or(name).to_owned();
            (last, quote! { #name })
        }
        None => (
            fn_name.clone(),
            quote! { ::core::concat!(::core::module_path!(), "::", #fn_name) },
        ),
    };
    // The key must be `Display`; an error about it points at the key argument.
    let key_ref = quote_spanned! {key.span=> &#key_ident };
    let checkpoint_id = quote! {
        let __runtara_checkpoint_id = ::runtara_sdk::__private::checkpoint_id(#id_name, #key_ref);
        let __runtara_producer: &'static str = #producer;
    };

    // Every call that can fail a bound on `T` or `E` (the call, its `.await`) is spanned
    // on the return type, so errors point there and rustc reports each unmet bound once.
    let ret_span = ret.span();
    let err_ty = quote_spanned! {ret_span=> <#ret as ::runtara_sdk::__private::ResultParts>::Err };

    // One attempt: arguments destructured, then the user's block, type-checked against
    // the declared return type; `return` and `?` in it leave this `async` block.
    let body = &item.block;
    let destructure = bindings.iter().filter_map(|b| {
        let pattern = b.pattern?;
        let name = &b.name;
        Some(quote! { let #pattern = #name; })
    });
    let attempt = quote! {
        async move {
            // The key names the checkpoint, so the body need not use it.
            let _ = &#key_ident;
            #( #destructure )*
            let __runtara_ret: #ret = #body;
            #[allow(unreachable_code)]
            __runtara_ret
        }
    };

    let call = if args.retries() == 0 {
        quote_spanned! {ret_span=>
            ::runtara_sdk::__private::run_durable_once(
                __runtara_producer,
                __runtara_checkpoint_id,
                #attempt,
            )
            .await
        }
    } else {
        let max_retries = args.retries();
        let strategy = Ident::new(args.strategy().variant_name(), Span::call_site());
        let delay_ms = args.delay_ms();
        let clones = bindings.iter().map(|b| {
            let name = &b.name;
            quote_spanned! {b.span=>
                let #name = ::runtara_sdk::__private::clone_argument(&#name);
            }
        });
        quote_spanned! {ret_span=>
            ::runtara_sdk::__private::run_durable(
                __runtara_producer,
                __runtara_checkpoint_id,
                ::runtara_sdk::__private::RetryPolicy {
                    max_retries: #max_retries,
                    strategy: ::runtara_sdk::__private::Strategy::#strategy,
                    delay_ms: #delay_ms,
                },
                |__runtara_error: &#err_ty| {
                    #[allow(unused_imports)]
                    use ::runtara_sdk::__private::RetryFallback as _;
                    ::runtara_sdk::__private::Classify(__runtara_error).retryable()
                },
                || {
                    #( #clones )*
                    #attempt
                },
            )
            .await
        }
    };

    let attrs = &item.attrs;
    let vis = &item.vis;
    quote! {
        #( #attrs )*
        #vis #sig {
            #checkpoint_id
            #call
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn expand(args: &str, item: &str) -> String {
        let args: TokenStream = args.parse().unwrap();
        let item: TokenStream = item.parse().unwrap();
        durable(args, item).to_string()
    }

    #[test]
    fn the_checkpoint_id_is_the_function_name_and_the_key() {
        let out = expand(
            "",
            "async fn charge(order: String) -> Result<u8, E> { Ok(1) }",
        );
        assert!(
            out.contains("checkpoint_id (\"charge\" , & order)"),
            "{out}"
        );
        assert!(
            out.contains("run_durable (__runtara_producer , __runtara_checkpoint_id ,"),
            "{out}"
        );
        assert!(
            out.contains(":: core :: concat ! (:: core :: module_path ! () , \"::\" , \"charge\")"),
            "{out}"
        );
        assert!(out.contains("max_retries : 3u32"), "{out}");
        assert!(out.contains("Strategy :: ExponentialBackoff"), "{out}");
        assert!(out.contains("delay_ms : 1000u64"), "{out}");
    }

    #[test]
    fn raw_identifiers_lose_their_prefix_in_the_id() {
        let out = expand("", "async fn r#match(k: String) -> Result<u8, E> { Ok(1) }");
        assert!(out.contains("checkpoint_id (\"match\" , & k)"), "{out}");
    }

    #[test]
    fn the_signature_and_attributes_are_kept() {
        let out = expand(
            "",
            "/// Docs.\n#[inline] pub(crate) async fn f<T: Clone>(k: T, o: &u8) -> Result<u8, E> where T: Send { Ok(1) }",
        );
        assert!(
            out.starts_with("# [doc = \" Docs.\"] # [inline] pub (crate) async fn f < T : Clone > (k : T , o : & u8) -> Result < u8 , E > where T : Send {"),
            "{out}"
        );
    }

    #[test]
    fn the_body_is_type_checked_against_the_return_type() {
        let out = expand("", "async fn f(k: String) -> Result<u8, E> { Ok(1) }");
        assert!(
            out.contains("let __runtara_ret : Result < u8 , E > = { Ok (1) } ; # [allow (unreachable_code)] __runtara_ret"),
            "{out}"
        );
    }

    #[test]
    fn options_reach_the_policy() {
        let out = expand(
            "max_retries = 5, strategy = FixedDelay, delay = 20",
            "async fn f(k: String) -> Result<u8, E> { Ok(1) }",
        );
        assert!(out.contains("max_retries : 5u32"), "{out}");
        assert!(out.contains("Strategy :: FixedDelay"), "{out}");
        assert!(out.contains("delay_ms : 20u64"), "{out}");
    }

    #[test]
    fn every_argument_is_cloned_for_each_attempt() {
        let out = expand(
            "",
            "async fn f(k: String, o: &Order) -> Result<u8, E> { Ok(1) }",
        );
        assert!(out.contains("let k = :: runtara_sdk :: __private :: clone_argument (& k) ;"));
        assert!(out.contains("let o = :: runtara_sdk :: __private :: clone_argument (& o) ;"));
    }

    #[test]
    fn a_name_sets_the_producer_and_the_id_takes_its_last_segment() {
        let out = expand(
            "name = \"billing::v1::charge\"",
            "async fn pay(order: String) -> Result<u8, E> { Ok(1) }",
        );
        assert!(
            out.contains("checkpoint_id (\"charge\" , & order)"),
            "{out}"
        );
        assert!(
            out.contains("__runtara_producer : & 'static str = \"billing::v1::charge\""),
            "{out}"
        );
    }

    #[test]
    fn no_retries_runs_the_body_once_without_clones() {
        let out = expand(
            "max_retries = 0",
            "async fn f(k: String) -> Result<u8, E> { Ok(1) }",
        );
        assert!(
            out.contains(
                "run_durable_once (__runtara_producer , __runtara_checkpoint_id , async move {"
            ),
            "{out}"
        );
        assert!(!out.contains("clone_argument"), "{out}");
        assert!(!out.contains("RetryPolicy"), "{out}");
    }

    #[test]
    fn methods_key_on_the_first_argument_after_self() {
        let out = expand("", "async fn f(&self, id: u64) -> Result<u8, E> { Ok(1) }");
        assert!(out.contains("checkpoint_id (\"f\" , & id)"), "{out}");
        assert!(out.contains("async fn f (& self , id : u64)"), "{out}");
    }

    #[test]
    fn patterns_are_bound_to_generated_names_and_destructured_inside() {
        let out = expand(
            "",
            "async fn f(mut k: String, (a, b): (u8, u8)) -> Result<u8, E> { Ok(a + b) }",
        );
        assert!(
            out.contains("async fn f (__runtara_arg0 : String , __runtara_arg1 : (u8 , u8))"),
            "{out}"
        );
        assert!(
            out.contains("checkpoint_id (\"f\" , & __runtara_arg0)"),
            "{out}"
        );
        assert!(
            out.contains("let mut k = __runtara_arg0 ; let (a , b) = __runtara_arg1 ;"),
            "{out}"
        );
    }

    #[test]
    fn errors_keep_the_users_item() {
        let out = expand("bogus = 1", "fn f(k: String) -> u8 { 1 }");
        assert!(out.contains("fn f (k : String) -> u8 { 1 }"), "{out}");
        // One error for the option, two for the function (not async, not `Result`).
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    }

    #[test]
    fn a_non_function_is_reported_and_kept() {
        let out = expand("", "struct S;");
        assert!(out.starts_with("struct S ;"), "{out}");
        assert!(
            out.contains("`#[durable]` applies to an `async fn` with a body"),
            "{out}"
        );
    }
}
