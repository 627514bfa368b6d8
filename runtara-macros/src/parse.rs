//! A typed view of the function under `#[durable]`, keeping the original syntax nodes
//! so every error can point at the token at fault.
//!
//! Two shapes are durable:
//! - an `async fn`, whose body is its block;
//! - a plain `fn` returning a future whose whole body is `Box::pin(async move { .. })`
//!   (or `async move { .. }`), and whose return type names the future's output, as in
//!   `Pin<Box<dyn Future<Output = R> + Send + 'async_trait>>`. This is what
//!   `#[async_trait]` makes of an `async fn` before `#[durable]` sees it (and what
//!   `#[tracing::instrument]` keeps); the body is then the `async` block's.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{
    Block, Expr, ExprAsync, FnArg, GenericArgument, Ident, ItemFn, Pat, PatType, PathArguments,
    Receiver, ReturnType, Stmt, Type, TypeParamBound,
};

/// One argument other than the receiver.
pub(crate) struct Argument<'a> {
    /// The whole `pattern: Type` node.
    pub(crate) node: &'a PatType,
    /// The name the argument has in the expanded signature: the pattern's identifier
    /// when the pattern is one (`key`, `mut key`, `ref key`, `key @ ..`), else `None`
    /// (a tuple, a struct, `_`, …: bound to a generated name, destructured in the body).
    pub(crate) name: Option<&'a Ident>,
    /// Whether the pattern is exactly `name` (nothing to rebind in the body).
    pub(crate) plain: bool,
}

/// How the function's body becomes a future.
pub(crate) enum Shape<'a> {
    /// `async fn f(..) -> R { BODY }`.
    Async,
    /// `fn f(..) -> impl Future<Output = R> { PIN(async move { BODY }) }`, where `PIN`,
    /// when present, is the callee wrapping the block (`Box::pin`).
    Future {
        pin: Option<&'a Expr>,
        block: &'a ExprAsync,
    },
}

/// The function as `#[durable]` sees it.
pub(crate) struct DurableFn<'a> {
    pub(crate) item: &'a ItemFn,
    /// `None` when the function is neither `async` nor a future-returning shape.
    pub(crate) shape: Option<Shape<'a>>,
    pub(crate) receiver: Option<&'a Receiver>,
    pub(crate) arguments: Vec<Argument<'a>>,
    /// What the call returns: the declared return type of an `async fn`, the future's
    /// `Output` otherwise.
    pub(crate) output: Option<&'a Type>,
}

impl<'a> DurableFn<'a> {
    pub(crate) fn new(item: &'a ItemFn) -> Self {
        let mut receiver = None;
        let mut arguments = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(node) => {
                    let (name, plain) = match &*node.pat {
                        Pat::Ident(p) => (
                            Some(&p.ident),
                            p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none(),
                        ),
                        _ => (None, false),
                    };
                    arguments.push(Argument { node, name, plain });
                }
            }
        }
        let declared = match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        let (shape, output) = if item.sig.asyncness.is_some() {
            (Some(Shape::Async), declared)
        } else {
            match (future_body(&item.block), declared.and_then(future_output)) {
                (Some((pin, block)), Some(output)) => {
                    (Some(Shape::Future { pin, block }), Some(output))
                }
                _ => (None, declared),
            }
        };
        DurableFn {
            item,
            shape,
            receiver,
            arguments,
            output,
        }
    }

    /// The idempotency key: the first argument after any receiver.
    pub(crate) fn key(&self) -> Option<&Argument<'a>> {
        self.arguments.first()
    }

    /// The block that runs for each attempt.
    pub(crate) fn body(&self) -> &'a Block {
        match &self.shape {
            Some(Shape::Future { block, .. }) => &block.block,
            _ => &self.item.block,
        }
    }

    /// Whether the function is a method or an associated function that names `Self`
    /// in its signature: its records then name its `Self` type too.
    pub(crate) fn has_self_type(&self) -> bool {
        self.receiver.is_some() || names_self(self.item.sig.to_token_stream())
    }
}

/// `Box::pin(async move { .. })` or `async move { .. }`, the whole body.
fn future_body(block: &Block) -> Option<(Option<&Expr>, &ExprAsync)> {
    let [Stmt::Expr(expr, None)] = block.stmts.as_slice() else {
        return None;
    };
    match expr {
        Expr::Async(block) => Some((None, block)),
        Expr::Call(call) if call.args.len() == 1 && is_box_pin(&call.func) => {
            match call.args.first() {
                Some(Expr::Async(block)) => Some((Some(&*call.func), block)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A path ending in `Box::pin` (`Box::pin`, `::std::boxed::Box::pin`).
fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(path) = func else {
        return false;
    };
    let segments: Vec<_> = path.path.segments.iter().map(|s| &s.ident).collect();
    matches!(segments.as_slice(), [.., b, p] if *b == "Box" && *p == "pin")
}

/// The `R` of a `Future<Output = R>` named in a return type, such as
/// `Pin<Box<dyn Future<Output = R> + Send + 'a>>` or `impl Future<Output = R> + Send`.
pub(crate) fn future_output(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.iter().find_map(|segment| {
            let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
                return None;
            };
            arguments.args.iter().find_map(|argument| match argument {
                GenericArgument::Type(inner) => future_output(inner),
                _ => None,
            })
        }),
        Type::TraitObject(object) => bounds_output(object.bounds.iter()),
        Type::ImplTrait(implied) => bounds_output(implied.bounds.iter()),
        Type::Paren(inner) => future_output(&inner.elem),
        Type::Group(inner) => future_output(&inner.elem),
        _ => None,
    }
}

fn bounds_output<'a>(mut bounds: impl Iterator<Item = &'a TypeParamBound>) -> Option<&'a Type> {
    bounds.find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let segment = bound.path.segments.last()?;
        if segment.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
            return None;
        };
        arguments.args.iter().find_map(|argument| match argument {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// Whether `tokens` name `Self` anywhere.
fn names_self(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(ident) => ident == "Self",
        proc_macro2::TokenTree::Group(group) => names_self(group.stream()),
        _ => false,
    })
}

/// Whether a type can be a `Result` at all. Paths (and macros) may be, through an alias
/// such as `io::Result<T>` or `type Res<T> = Result<T, MyError>`: the compiler checks
/// those, through `ResultParts`. Tuples, references, arrays, `impl Trait`… never are.
pub(crate) fn may_be_result(ty: &Type) -> bool {
    match ty {
        Type::Path(_) | Type::Macro(_) | Type::Verbatim(_) => true,
        Type::Paren(inner) => may_be_result(&inner.elem),
        Type::Group(inner) => may_be_result(&inner.elem),
        _ => false,
    }
}

/// Whether a receiver is a mutable reference (`&mut self`, `self: &mut Self`), which
/// a retried call cannot copy.
pub(crate) fn is_mutable_reference(receiver: &Receiver) -> bool {
    match (&receiver.reference, &*receiver.ty) {
        (Some(_), _) => receiver.mutability.is_some(),
        (None, Type::Reference(reference)) => reference.mutability.is_some(),
        _ => false,
    }
}

/// Whether a receiver is a shared reference (`&self`, `&'a self`, `self: &Self`), which
/// every attempt of a retried call can copy as it is.
pub(crate) fn is_shared_reference(receiver: &Receiver) -> bool {
    match (&receiver.reference, &*receiver.ty) {
        (Some(_), _) => receiver.mutability.is_none(),
        (None, Type::Reference(reference)) => reference.mutability.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn item(source: &str) -> ItemFn {
        syn::parse_str(source).unwrap()
    }

    #[test]
    fn names_and_patterns() {
        let f = item("async fn f(&self, key: String, mut n: u8, (a, b): (u8, u8), ref r: u8) -> Result<u8, E> { todo!() }");
        let view = DurableFn::new(&f);
        assert!(view.receiver.is_some());
        let names: Vec<_> = view
            .arguments
            .iter()
            .map(|a| (a.name.map(ToString::to_string), a.plain))
            .collect();
        assert_eq!(
            names,
            [
                (Some("key".to_owned()), true),
                (Some("n".to_owned()), false),
                (None, false),
                (Some("r".to_owned()), false)
            ]
        );
        assert_eq!(
            view.key().and_then(|k| k.name).map(ToString::to_string),
            Some("key".to_owned())
        );
    }

    #[test]
    fn paths_may_be_results_other_types_may_not() {
        let may = |source: &str| may_be_result(&syn::parse_str::<Type>(source).unwrap());
        assert!(may("std::result::Result<Receipt, MyError>"));
        assert!(may("anyhow::Result<u8>"));
        assert!(may("Res<u8>"));
        assert!(may("<T as Trait>::Output"));
        assert!(!may("(u8, u8)"));
        assert!(!may("&'static str"));
        assert!(!may("[u8; 4]"));
        assert!(!may("impl Future<Output = u8>"));
    }

    #[test]
    fn the_async_trait_shape_is_recognised() {
        let f = item(
            "fn f<'life0, 'async_trait>(&'life0 self, key: String) -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<u8, E>> + ::core::marker::Send + 'async_trait>> where 'life0: 'async_trait, Self: 'async_trait { Box::pin(async move { let __self = self; let __ret: Result<u8, E> = { Ok(1) }; __ret }) }",
        );
        let view = DurableFn::new(&f);
        assert!(matches!(
            view.shape,
            Some(Shape::Future { pin: Some(_), .. })
        ));
        assert_eq!(
            view.output.unwrap().to_token_stream().to_string(),
            "Result < u8 , E >"
        );
        assert!(view
            .body()
            .to_token_stream()
            .to_string()
            .contains("let __self = self"));
    }

    #[test]
    fn an_async_block_returned_as_impl_future_is_recognised() {
        let f = item(
            "fn f(&self, key: String) -> impl Future<Output = io::Result<u8>> + Send + '_ { async move { Ok(1) } }",
        );
        let view = DurableFn::new(&f);
        assert!(matches!(view.shape, Some(Shape::Future { pin: None, .. })));
        assert_eq!(
            view.output.unwrap().to_token_stream().to_string(),
            "io :: Result < u8 >"
        );
    }

    #[test]
    fn other_plain_functions_are_not_futures() {
        for source in [
            "fn f(key: String) -> Result<u8, E> { Ok(1) }",
            // Work before the future: not the shape.
            "fn f(key: String) -> Pin<Box<dyn Future<Output = Result<u8, E>>>> { let k = key; Box::pin(async move { Ok(1) }) }",
            // No `Output` to name.
            "fn f(key: String) -> Pin<Box<dyn Send>> { Box::pin(async move { Ok(1) }) }",
            "fn f(key: String) -> Pin<Box<dyn Future<Output = u8>>> { Box::new(async move { 1 }) }",
        ] {
            assert!(DurableFn::new(&item(source)).shape.is_none(), "{source}");
        }
    }

    #[test]
    fn methods_and_functions_naming_self_have_a_self_type() {
        let has = |source: &str| DurableFn::new(&item(source)).has_self_type();
        assert!(has("async fn f(&self, k: u8) -> Result<u8, E> { todo!() }"));
        assert!(has(
            "async fn f(self: Arc<Self>, k: u8) -> Result<u8, E> { todo!() }"
        ));
        assert!(has("async fn load(k: u8) -> Result<Self, E> { todo!() }"));
        assert!(has(
            "async fn f(k: u8, o: Vec<Self>) -> Result<u8, E> { todo!() }"
        ));
        assert!(!has("async fn f(k: u8) -> Result<u8, E> { todo!() }"));
    }

    #[test]
    fn receivers() {
        let receiver = |source: &str| {
            let f = item(source);
            let view = DurableFn::new(&f);
            view.receiver
                .map(|r| (is_shared_reference(r), is_mutable_reference(r)))
        };
        assert_eq!(receiver("async fn f(&self) {}"), Some((true, false)));
        assert_eq!(receiver("async fn f(&'a self) {}"), Some((true, false)));
        assert_eq!(receiver("async fn f(self: &Self) {}"), Some((true, false)));
        assert_eq!(receiver("async fn f(&mut self) {}"), Some((false, true)));
        assert_eq!(
            receiver("async fn f(self: &mut Self) {}"),
            Some((false, true))
        );
        assert_eq!(receiver("async fn f(self) {}"), Some((false, false)));
        assert_eq!(
            receiver("async fn f(self: Arc<Self>) {}"),
            Some((false, false))
        );
        assert_eq!(
            receiver("async fn f(self: Pin<&mut Self>) {}"),
            Some((false, false))
        );
    }
}
