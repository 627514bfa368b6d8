//! Code generation for `#[durable]`. Runtime items are named only through
//! `::runtara_sdk::__private` (or `{crate}::__private` with `crate = "..."`), locals as
//! `__runtara_*`.
//!
//! ```text
//! #[durable(max_retries = 2, delay = 10)]
//! pub async fn charge(mut key: String, (a, b): (u8, u8)) -> Result<Receipt, MyError> { BODY }
//! ```
//! becomes
//! ```text
//! pub async fn charge(key: String, arg1: (u8, u8)) -> Result<Receipt, MyError> {
//!     let __runtara_checkpoint_id = __private::checkpoint_id("charge", &key);
//!     let __runtara_call = {
//!         use __private::{KeepFallback as _, RetryFallback as _};
//!         let __runtara_kit = __private::kit::<Result<Receipt, MyError>>();
//!         __private::Call::new(
//!             __runtara_kit,
//!             __runtara_kit.classifier(),   // `Retryable`, if `MyError` implements it
//!             __runtara_kit.keep_value(),   // hold `Receipt` while recording it, if `Send`
//!             __runtara_kit.keep_error(),   // hold `MyError` while recording it, if `Send`
//!             __private::Producer::function(concat!(module_path!(), "::", "charge")),
//!             __runtara_checkpoint_id,
//!         )
//!     };
//!     __private::run_durable(
//!         __runtara_call,
//!         __private::RetryPolicy { max_retries: 2, strategy: __private::Strategy::ExponentialBackoff, delay_ms: 10 },
//!         move || {
//!             let key = __private::clone_argument(&key);
//!             let arg1 = __private::clone_argument(&arg1);
//!             async move {
//!                 let _ = &key;
//!                 let mut key = key;
//!                 let (a, b) = arg1;
//!                 let __runtara_ret: Result<Receipt, MyError> = { BODY };
//!                 __runtara_ret
//!             }
//!         },
//!     )
//!     .await
//! }
//! ```
//! (`arg1` is hygienic: it cannot clash with the user's names.)
//! `return` and `?` in `BODY` leave the attempt's `async` block, as they would leave the
//! function. With `max_retries = 0` the same `async` block runs once through
//! `run_durable_once`, without clones. With `name = "billing::charge"` the producer is that
//! name and the checkpoint id names its last segment (`"charge::{key}"`). A method's
//! producer is `Producer::method(.., type_name::<Self>())`. A method with an owned receiver
//! (`self`, `self: Arc<Self>`) and retries clones it for each attempt into
//! `__runtara_self`, which stands for `self` in the attempt's body.
//!
//! A function returning `Box::pin(async move { BODY })` (what `#[async_trait]` makes of an
//! `async fn`) keeps its signature and returns `Box::pin(async move { … })` around the same
//! code, with the `async` block's body as `BODY`.
//!
//! Spans: the `kit` call, the `run_durable` call and its `.await` cover the return type,
//! so an unmet requirement on it is reported once, there; each clone covers its argument
//! (`name: Type`), and the checkpoint id's key covers the key argument.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Block, FnArg, Ident, ItemFn, Pat, PatIdent};

use crate::args::DurableArgs;
use crate::parse::{is_shared_reference, DurableFn, Shape};
use crate::validate::validate;

/// Expands `#[durable(args)] item`. On any error, emits the item unchanged plus the
/// errors, so the rest of the crate still type-checks (tokio-macros does the same).
pub(crate) fn durable(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed_args = syn::parse2::<DurableArgs>(args);
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            if let Ok(closure) = syn::parse2::<syn::ExprClosure>(item.clone()) {
                return on_closure(&closure, item);
            }
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

/// `#[durable]` on a closure (an expression, where attribute macros are unstable): one
/// error and the closure, as one expression.
fn on_closure(closure: &syn::ExprClosure, item: TokenStream) -> TokenStream {
    let error = syn::Error::new_spanned(
        closure.or1_token,
        "`#[durable]` applies to an `async fn`, not to a closure: move the closure's body into \
         an `async fn` whose first argument is the idempotency key, and put `#[durable]` on it",
    )
    .to_compile_error();
    quote! { { #error; #item } }
}

/// How one argument reaches the body.
struct Binding<'a> {
    /// Its name in the expanded signature: the user's, or a generated one (see
    /// [`generated_name`]).
    name: Ident,
    /// The user's pattern, bound from `name` inside the body, when it is not just the
    /// name (`mut x`, `ref x`, `(a, b)`, `Point { x, y }`, `_`, …).
    pattern: Option<&'a Pat>,
    /// The first and last tokens of its type: errors about the argument cover
    /// `name: Type` (from the name to the type's last token).
    ty: (Span, Span),
}

/// The name of an argument whose pattern destructures it, in the expanded signature (and
/// so in its documentation): the pattern's type in snake case for `Size { width, height }`
/// or `OrderId(id)` (`size`, `order_id`), else `argN`. Hygienic (`Span::mixed_site`), so
/// it can clash with none of the user's names.
fn generated_name(pattern: &Pat, index: usize) -> Ident {
    let path = match pattern {
        Pat::Struct(pattern) => Some(&pattern.path),
        Pat::TupleStruct(pattern) => Some(&pattern.path),
        _ => None,
    };
    let name = path
        .and_then(|path| path.segments.last())
        .map(|segment| snake_case(&segment.ident.unraw().to_string()))
        .filter(|name| syn::parse_str::<Ident>(name).is_ok())
        .unwrap_or_else(|| format!("arg{index}"));
    Ident::new(&name, Span::mixed_site().located_at(pattern.span()))
}

/// `OrderId` → `order_id`, `HTTPServer` → `http_server`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let previous = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if previous.is_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_uppercase() && next_is_lower)
            {
                snake.push('_');
            }
        }
        snake.extend(c.to_lowercase());
    }
    snake
}

/// The first and last spans of `tokens` (the same span twice for one token).
fn span_range(tokens: &impl ToTokens) -> (Span, Span) {
    let mut tokens = tokens.to_token_stream().into_iter();
    let first = tokens
        .next()
        .map_or_else(Span::call_site, |token| token.span());
    let last = tokens.last().map_or(first, |token| token.span());
    (first, last)
}

/// `tokens` with every token (and every group's delimiters) spanned at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                TokenTree::Group(respanned)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// Replaces `self` with `__runtara_self` in an attempt's body (a per-attempt clone of an
/// owned receiver), as async-trait does: not in nested items, whose `self` is their own,
/// nor in macro calls that define a `fn`.
struct ReplaceSelf;

impl ReplaceSelf {
    fn tokens(&mut self, tokens: TokenStream) -> TokenStream {
        tokens
            .into_iter()
            .map(|token| match token {
                TokenTree::Ident(ident) if ident == "self" => {
                    TokenTree::Ident(Ident::new("__runtara_self", ident.span()))
                }
                TokenTree::Group(group) => {
                    let mut replaced = Group::new(group.delimiter(), self.tokens(group.stream()));
                    replaced.set_span(group.span());
                    TokenTree::Group(replaced)
                }
                other => other,
            })
            .collect()
    }
}

fn defines_fn(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "fn",
        TokenTree::Group(group) => defines_fn(group.stream()),
        _ => false,
    })
}

impl VisitMut for ReplaceSelf {
    fn visit_ident_mut(&mut self, ident: &mut Ident) {
        if ident == "self" {
            *ident = Ident::new("__runtara_self", ident.span());
        }
    }

    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        // `self`, but not `self::item`.
        if path.segments.len() == 1 {
            if let Some(segment) = path.segments.first_mut() {
                self.visit_ident_mut(&mut segment.ident);
            }
        }
        for segment in &mut path.segments {
            self.visit_path_arguments_mut(&mut segment.arguments);
        }
    }

    fn visit_item_mut(&mut self, item: &mut syn::Item) {
        // Nested items have their own `self`; local `macro_rules!` may use the method's.
        if let syn::Item::Macro(item) = item {
            if item.mac.path.is_ident("macro_rules") {
                self.visit_macro_mut(&mut item.mac);
            }
        }
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        if !defines_fn(mac.tokens.clone()) {
            mac.tokens = self.tokens(mac.tokens.clone());
        }
    }
}

fn generate(view: &DurableFn<'_>, args: &DurableArgs) -> TokenStream {
    let item = view.item;
    let (Some(ret), Some(shape)) = (view.output, view.shape.as_ref()) else {
        // `validate` guarantees both; stay soft rather than panic.
        return item.to_token_stream();
    };

    let bindings: Vec<Binding<'_>> = view
        .arguments
        .iter()
        .enumerate()
        .map(|(index, argument)| {
            let name = match argument.name {
                Some(name) => name.clone(),
                None => generated_name(&argument.node.pat, index),
            };
            Binding {
                name,
                pattern: (!argument.plain).then_some(&*argument.node.pat),
                ty: span_range(&argument.node.ty),
            }
        })
        .collect();
    let Some(key) = bindings.first() else {
        return item.to_token_stream();
    };

    // The expanded signature binds every argument to a plain name (the user's, so that
    // the documentation shows it), and the body binds the user's patterns from it.
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

    let (ret_first, ret_last) = span_range(ret);
    let default_krate = quote!(::runtara_sdk);
    let krate = args
        .krate
        .as_ref()
        .map_or(default_krate, ToTokens::to_token_stream);
    // `{krate}::__private` spanned on the return type's first token: a path that goes on
    // to a name spanned on its last token covers the whole type.
    let private_at_ret = respan(quote!(#krate::__private), ret_first);
    let private = respan(quote!(#krate::__private), Span::call_site());

    let key_ident = &key.name;
    let fn_name = item.sig.ident.unraw().to_string();
    // The function's identity, recorded with each result: `name = "..."`, else its module
    // path, with its `Self` type for a method. The checkpoint id names the identity's last
    // segment (the function's name).
    let (id_name, producer) = match &args.name {
        Some(name) => {
            let last = name.rsplit("::").next().unwrap_or(name).to_owned();
            (last, quote! { #private::Producer::function(#name) })
        }
        None if view.has_self_type() => (
            fn_name.clone(),
            quote! {
                #private::Producer::method(
                    ::core::concat!(::core::module_path!(), "::", #fn_name),
                    ::core::any::type_name::<Self>(),
                )
            },
        ),
        None => (
            fn_name.clone(),
            quote! {
                #private::Producer::function(::core::concat!(::core::module_path!(), "::", #fn_name))
            },
        ),
    };

    // `checkpoint_id(.., &key)`: the call and its argument cover the key argument
    // (`key: Type`), where an unmet `Display` is reported.
    let checkpoint_id = {
        let amp = quote_spanned!(key.ty.1=> &);
        let private_at_key = respan(private.clone(), key_ident.span());
        let mut arguments = Group::new(
            proc_macro2::Delimiter::Parenthesis,
            quote!(#id_name, #amp #key_ident),
        );
        arguments.set_span(key.ty.1);
        quote_spanned!(key_ident.span()=> #private_at_key::checkpoint_id #arguments)
    };

    let kit = quote_spanned! {ret_last=> #private_at_ret::kit::<#ret>() };
    let call_new = quote_spanned! {ret_last=> #private_at_ret::Call::new };
    let prelude = quote! {
        #[allow(clippy::used_underscore_binding)]
        let __runtara_checkpoint_id = #checkpoint_id;
        let __runtara_call = {
            #[allow(unused_imports)]
            use #private::{KeepFallback as _, RetryFallback as _};
            let __runtara_kit = #kit;
            #call_new(
                __runtara_kit,
                __runtara_kit.classifier(),
                __runtara_kit.keep_value(),
                __runtara_kit.keep_error(),
                #producer,
                __runtara_checkpoint_id,
            )
        };
    };

    // An owned receiver (`self`, `self: Arc<Self>`) with retries is cloned for each
    // attempt; the attempt's body names the clone.
    let retries = args.retries();
    let clone_self = view
        .receiver
        .filter(|receiver| retries > 0 && !is_shared_reference(receiver));
    let mut body: Block = view.body().clone();
    let mut rebinds: Vec<TokenStream> = bindings
        .iter()
        .filter_map(|b| {
            let pattern = b.pattern?;
            let name = &b.name;
            Some(quote! { let #pattern = #name; })
        })
        .collect();
    if clone_self.is_some() {
        ReplaceSelf.visit_block_mut(&mut body);
        rebinds = rebinds
            .into_iter()
            .map(|tokens| ReplaceSelf.tokens(tokens))
            .collect();
    }

    // One attempt: arguments bound to the user's patterns, then the user's block,
    // type-checked against the declared return type; `return` and `?` in it leave this
    // `async` block.
    let attempt = quote! {
        async move {
            // The key names the checkpoint, so the body need not use it.
            #[allow(clippy::used_underscore_binding)]
            let _ = &#key_ident;
            #( #rebinds )*
            let __runtara_ret: #ret = #body;
            #[allow(unreachable_code)]
            __runtara_ret
        }
    };

    let call = if retries == 0 {
        quote_spanned! {ret_last=>
            #private_at_ret::run_durable_once(__runtara_call, #attempt).await
        }
    } else {
        let strategy = Ident::new(args.strategy().variant_name(), Span::call_site());
        let delay_ms = args.delay_ms();
        let clone_self = clone_self.map(|receiver| {
            let this = Ident::new("__runtara_self", receiver.self_token.span);
            let self_token = &receiver.self_token;
            let amp = quote_spanned!(span_range(receiver).1=> &);
            quote! {
                let #this = #private::clone_receiver(#amp #self_token);
            }
        });
        let clones = bindings.iter().map(|b| {
            let name = &b.name;
            let amp = quote_spanned!(b.ty.1=> &);
            let clone = Ident::new("clone_argument", b.ty.0);
            quote! {
                #[allow(clippy::used_underscore_binding)]
                let #name = #private::#clone(#amp #name);
            }
        });
        quote_spanned! {ret_last=>
            #private_at_ret::run_durable(
                __runtara_call,
                #private::RetryPolicy {
                    max_retries: #retries,
                    strategy: #private::Strategy::#strategy,
                    delay_ms: #delay_ms,
                },
                move || {
                    #clone_self
                    #( #clones )*
                    #attempt
                },
            )
            .await
        }
    };

    let attrs = &item.attrs;
    let vis = &item.vis;
    let block = match shape {
        Shape::Async => quote! {
            {
                #prelude
                #call
            }
        },
        Shape::Future { pin, block } => {
            let async_attrs = &block.attrs;
            let future = quote! {
                #( #async_attrs )*
                async move {
                    #prelude
                    #call
                }
            };
            match pin {
                Some(pin) => quote! { { #pin(#future) } },
                None => quote! { { #future } },
            }
        }
    };
    quote! {
        #( #attrs )*
        #vis #sig #block
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
            out.contains(
                "Producer :: function (:: core :: concat ! (:: core :: module_path ! () , \"::\" , \"charge\"))"
            ),
            "{out}"
        );
        assert!(out.contains("run_durable (__runtara_call ,"), "{out}");
        assert!(out.contains("max_retries : 3u32"), "{out}");
        assert!(out.contains("Strategy :: ExponentialBackoff"), "{out}");
        assert!(out.contains("delay_ms : 1000u64"), "{out}");
    }

    #[test]
    fn the_return_type_is_checked_once_through_the_kit() {
        let out = expand("", "async fn f(k: String) -> Res<u8> { Ok(1) }");
        assert!(
            out.contains(
                "let __runtara_kit = :: runtara_sdk :: __private :: kit :: < Res < u8 > > () ;"
            ),
            "{out}"
        );
        assert_eq!(out.matches(":: kit ::").count(), 1, "{out}");
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
    fn every_argument_is_cloned_for_each_attempt_by_a_closure_that_owns_them() {
        let out = expand(
            "",
            "async fn f(k: String, o: &Order) -> Result<u8, E> { Ok(1) }",
        );
        assert!(out.contains("move || {"), "{out}");
        assert!(
            out.contains("let k = :: runtara_sdk :: __private :: clone_argument (& k) ;"),
            "{out}"
        );
        assert!(
            out.contains("let o = :: runtara_sdk :: __private :: clone_argument (& o) ;"),
            "{out}"
        );
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
            out.contains("Producer :: function (\"billing::v1::charge\")"),
            "{out}"
        );
    }

    #[test]
    fn a_crate_path_replaces_runtara_sdk() {
        let out = expand(
            "crate = \"acme::runtara\"",
            "async fn f(&self, k: String) -> Result<u8, E> { Ok(1) }",
        );
        assert!(!out.contains("runtara_sdk"), "{out}");
        assert!(
            out.contains("acme :: runtara :: __private :: checkpoint_id"),
            "{out}"
        );
        assert!(out.contains("acme :: runtara :: __private :: kit"), "{out}");
    }

    #[test]
    fn no_retries_runs_the_body_once_without_clones() {
        let out = expand(
            "max_retries = 0",
            "async fn f(k: String) -> Result<u8, E> { Ok(1) }",
        );
        assert!(
            out.contains("run_durable_once (__runtara_call , async move {"),
            "{out}"
        );
        assert!(!out.contains("clone_argument"), "{out}");
        assert!(!out.contains("RetryPolicy"), "{out}");
    }

    #[test]
    fn methods_key_on_the_first_argument_after_self_and_name_their_self_type() {
        let out = expand("", "async fn f(&self, id: u64) -> Result<u8, E> { Ok(1) }");
        assert!(out.contains("checkpoint_id (\"f\" , & id)"), "{out}");
        assert!(out.contains("async fn f (& self , id : u64)"), "{out}");
        assert!(
            out.contains("Producer :: method (:: core :: concat ! (:: core :: module_path ! () , \"::\" , \"f\") , :: core :: any :: type_name :: < Self > () ,)"),
            "{out}"
        );
        // A shared receiver is copied as it is: no clone, no renaming.
        assert!(!out.contains("clone_receiver"), "{out}");
        assert!(!out.contains("__runtara_self"), "{out}");
    }

    #[test]
    fn owned_receivers_are_cloned_for_each_attempt() {
        let out = expand(
            "",
            "async fn f(self: Arc<Self>, id: u64) -> Result<u8, E> { let s = self.clone(); Ok(self.n + format!(\"{}\", self.n).len()) }",
        );
        assert!(
            out.contains(
                "let __runtara_self = :: runtara_sdk :: __private :: clone_receiver (& self) ;"
            ),
            "{out}"
        );
        assert!(
            out.contains("let s = __runtara_self . clone () ; Ok (__runtara_self . n + format ! (\"{}\" , __runtara_self . n) . len ())"),
            "{out}"
        );
        // Without retries the receiver moves into the only attempt.
        let out = expand(
            "max_retries = 0",
            "async fn f(self: Arc<Self>, id: u64) -> Result<u8, E> { Ok(self.n) }",
        );
        assert!(!out.contains("__runtara_self"), "{out}");
    }

    #[test]
    fn patterns_are_bound_to_the_users_names_where_there_is_one() {
        let out = expand(
            "",
            "async fn f(mut k: String, (a, b): (u8, u8), ref r: u8) -> Result<u8, E> { Ok(a + b) }",
        );
        assert!(
            out.contains("async fn f (k : String , arg1 : (u8 , u8) , r : u8)"),
            "{out}"
        );
        assert!(out.contains("checkpoint_id (\"f\" , & k)"), "{out}");
        assert!(
            out.contains("let mut k = k ; let (a , b) = arg1 ; let ref r = r ;"),
            "{out}"
        );
    }

    #[test]
    fn destructured_arguments_are_named_after_their_type() {
        let out = expand(
            "",
            "async fn f(OrderId(id): OrderId, Size { w, h }: Size, _: u8, HTTPServer(s): HTTPServer) -> Result<u8, E> { Ok(1) }",
        );
        assert!(
            out.contains("async fn f (order_id : OrderId , size : Size , arg2 : u8 , http_server : HTTPServer)"),
            "{out}"
        );
        assert!(out.contains("checkpoint_id (\"f\" , & order_id)"), "{out}");
        assert!(
            out.contains(
                "let OrderId (id) = order_id ; let Size { w , h } = size ; let _ = arg2 ;"
            ),
            "{out}"
        );
    }

    #[test]
    fn the_async_trait_shape_returns_the_pinned_durable_future() {
        let out = expand(
            "",
            "fn f<'life0, 'async_trait>(&'life0 self, key: String) -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<u8, E>> + ::core::marker::Send + 'async_trait>> where 'life0: 'async_trait, Self: 'async_trait { Box::pin(async move { let __self = self; let key = key; let __ret: Result<u8, E> = { Ok(1) }; #[allow(unreachable_code)] __ret }) }",
        );
        assert!(
            out.contains("'async_trait > > where 'life0 : 'async_trait , Self : 'async_trait { Box :: pin (async move { # [allow (clippy :: used_underscore_binding)] let __runtara_checkpoint_id"),
            "{out}"
        );
        assert!(out.contains(":: kit :: < Result < u8 , E > > ()"), "{out}");
        assert!(
            out.contains(
                "let __runtara_ret : Result < u8 , E > = { let __self = self ; let key = key ;"
            ),
            "{out}"
        );
    }

    #[test]
    fn errors_keep_the_users_item() {
        let out = expand("bogus = 1", "fn f(k: String) -> (u8, u8) { (1, 1) }");
        assert!(
            out.contains("fn f (k : String) -> (u8 , u8) { (1 , 1) }"),
            "{out}"
        );
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

    #[test]
    fn a_closure_is_one_expression_with_one_error() {
        let out = expand("", "async move |key: String| -> Result<u8, E> { Ok(1) }");
        assert!(out.starts_with("{ :: core :: compile_error !"), "{out}");
        assert!(
            out.ends_with("async move | key : String | -> Result < u8 , E > { Ok (1) } }"),
            "{out}"
        );
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
        assert!(out.contains("not to a closure"), "{out}");
    }
}
