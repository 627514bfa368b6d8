//! Every check `#[durable]` makes, each error spanned on the token at fault.
//!
//! Checks that need the trait system (the return type is a `Result`, `T: Serialize`,
//! `E: From<SdkError>`, the key is `Display`, arguments and receivers are `Clone`) are
//! left to the compiler, on spans the expansion points at the user's tokens.

use syn::Type;

use crate::parse::{is_mutable_reference, may_be_result, DurableFn};

/// Returns all the mistakes in `function`, combined, or `Ok`.
///
/// `retries` is the effective `max_retries`, or `None` when the attribute itself did not
/// parse (checks that depend on it are then skipped).
pub(crate) fn validate(function: &DurableFn<'_>, retries: Option<u32>) -> syn::Result<()> {
    let sig = &function.item.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(constness) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            constness,
            "`#[durable]` functions cannot be `const`; remove `const`",
        ));
    }
    if function.shape.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "`#[durable]` functions must be `async`; write `async fn`",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "`#[durable]` functions cannot be variadic",
        ));
    }
    match (function.key(), function.receiver) {
        (None, Some(receiver)) => errors.push(syn::Error::new_spanned(
            receiver,
            "`#[durable]` methods need a key argument after `self`: the first argument after \
             `self` is the idempotency key, e.g. `&self, key: String`",
        )),
        (None, None) => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "`#[durable]` functions need at least one argument: the first one is the idempotency \
             key, e.g. `key: String`",
        )),
        _ => {}
    }
    if let Some(retries @ 1..) = retries {
        if let Some(receiver) = function.receiver.filter(|r| is_mutable_reference(r)) {
            errors.push(syn::Error::new_spanned(
                receiver,
                format!(
                    "`#[durable]` methods with retries (`max_retries = {retries}`) cannot take \
                     `&mut self`: each attempt needs its own copy of the receiver; take `&self` \
                     or a receiver that is `Clone` (such as `self: Arc<Self>`), or disable \
                     retries with `#[durable(max_retries = 0)]`"
                ),
            ));
        }
        for argument in &function.arguments {
            if let Type::Reference(reference) = &*argument.node.ty {
                if reference.mutability.is_some() {
                    errors.push(syn::Error::new_spanned(
                        reference,
                        format!(
                            "`#[durable]` functions with retries (`max_retries = {retries}`) \
                             cannot take `&mut` arguments: each attempt needs its own copy; \
                             take `&` or an owned value, or disable retries with \
                             `#[durable(max_retries = 0)]`"
                        ),
                    ));
                }
            }
        }
    }
    match function.output {
        None => errors.push(syn::Error::new(
            sig.ident.span(),
            "`#[durable]` functions must return `Result<T, E>`; add `-> Result<T, E>`",
        )),
        Some(ty) if !may_be_result(ty) => errors.push(syn::Error::new_spanned(
            ty,
            "`#[durable]` functions must return `Result<T, E>`: `Ok` values are recorded, \
             `Err` values are retried or returned",
        )),
        Some(_) => {}
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn errors_with(source: &str, retries: Option<u32>) -> Vec<String> {
        let item: syn::ItemFn = syn::parse_str(source).unwrap();
        match validate(&DurableFn::new(&item), retries) {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn errors(source: &str) -> Vec<String> {
        errors_with(source, Some(3))
    }

    fn first(source: &str) -> String {
        errors(source).into_iter().next().unwrap_or_default()
    }

    #[test]
    fn a_well_formed_function_passes() {
        assert_eq!(
            errors("async fn f(key: String, x: &u8) -> Result<u8, E> { todo!() }"),
            Vec::<String>::new()
        );
        assert!(
            errors("async fn f(&self, key: String) -> anyhow::Result<u8> { todo!() }").is_empty()
        );
        assert!(
            errors("async fn f(mut key: String) -> std::io::Result<u8> { todo!() }").is_empty()
        );
        assert!(
            errors("async fn f(k: u8, (a, b): (u8, u8)) -> Result<u8, E> { todo!() }").is_empty()
        );
        assert!(errors(
            "async fn f<T: Clone>(k: impl Display + Clone, t: T) -> Result<T, E> { todo!() }"
        )
        .is_empty());
    }

    #[test]
    fn not_async() {
        assert_eq!(
            first("fn f(k: String) -> Result<u8, E> { todo!() }"),
            "`#[durable]` functions must be `async`; write `async fn`"
        );
    }

    #[test]
    fn const_and_variadic() {
        assert_eq!(
            first("const async fn f(k: String) -> Result<u8, E> { todo!() }"),
            "`#[durable]` functions cannot be `const`; remove `const`"
        );
        assert_eq!(
            first("async unsafe extern \"C\" fn f(k: u8, ...) -> Result<u8, E> { todo!() }"),
            "`#[durable]` functions cannot be variadic"
        );
    }

    #[test]
    fn no_arguments() {
        assert_eq!(
            first("async fn f() -> Result<u8, E> { todo!() }"),
            "`#[durable]` functions need at least one argument: the first one is the \
             idempotency key, e.g. `key: String`"
        );
    }

    #[test]
    fn self_without_key() {
        assert_eq!(
            first("async fn f(&self) -> Result<u8, E> { todo!() }"),
            "`#[durable]` methods need a key argument after `self`: the first argument after \
             `self` is the idempotency key, e.g. `&self, key: String`"
        );
    }

    #[test]
    fn missing_return_type() {
        assert_eq!(
            first("async fn f(k: String) { }"),
            "`#[durable]` functions must return `Result<T, E>`; add `-> Result<T, E>`"
        );
    }

    #[test]
    fn return_type_not_result() {
        let expected = "`#[durable]` functions must return `Result<T, E>`: `Ok` values are \
                        recorded, `Err` values are retried or returned";
        assert_eq!(
            first("async fn f(k: String) -> (u8, u8) { todo!() }"),
            expected
        );
        assert_eq!(
            first("async fn f(k: String) -> &'static str { \"\" }"),
            expected
        );
        // Paths are checked by the compiler: they may be aliases of `Result`.
        assert!(errors("async fn f(k: String) -> Res<u8> { todo!() }").is_empty());
        assert!(errors("async fn f(k: String) -> Option<u8> { None }").is_empty());
    }

    #[test]
    fn the_async_trait_shape_passes() {
        assert!(errors(
            "fn f<'life0, 'async_trait>(&'life0 self, key: String) -> Pin<Box<dyn Future<Output = Result<u8, E>> + Send + 'async_trait>> { Box::pin(async move { Ok(1) }) }"
        )
        .is_empty());
    }

    #[test]
    fn receivers_that_cannot_be_retried() {
        let message = "`#[durable]` methods with retries (`max_retries = 3`) cannot take \
                       `&mut self`: each attempt needs its own copy of the receiver; take \
                       `&self` or a receiver that is `Clone` (such as `self: Arc<Self>`), or \
                       disable retries with `#[durable(max_retries = 0)]`";
        assert_eq!(
            first("async fn f(&mut self, k: u8) -> Result<u8, E> { todo!() }"),
            message
        );
        assert_eq!(
            first("async fn f(self: &mut Self, k: u8) -> Result<u8, E> { todo!() }"),
            message
        );
        assert!(errors_with(
            "async fn f(&mut self, k: u8) -> Result<u8, E> { todo!() }",
            Some(0)
        )
        .is_empty());
        // Owned receivers are cloned for each attempt (the compiler checks `Clone`).
        assert!(errors("async fn f(self, k: u8) -> Result<u8, E> { todo!() }").is_empty());
        assert!(
            errors("async fn f(self: Arc<Self>, k: u8) -> Result<u8, E> { todo!() }").is_empty()
        );
    }

    #[test]
    fn mutable_references_cannot_be_retried() {
        assert_eq!(
            first("async fn f(k: u8, v: &mut Vec<u8>) -> Result<u8, E> { todo!() }"),
            "`#[durable]` functions with retries (`max_retries = 3`) cannot take `&mut` \
             arguments: each attempt needs its own copy; take `&` or an owned value, or disable \
             retries with `#[durable(max_retries = 0)]`"
        );
        assert!(errors_with(
            "async fn f(k: u8, v: &mut Vec<u8>) -> Result<u8, E> { todo!() }",
            Some(0)
        )
        .is_empty());
    }

    #[test]
    fn all_mistakes_are_reported_at_once() {
        assert_eq!(errors("fn f() -> (u8, u8) { (1, 1) }").len(), 3);
    }
}
