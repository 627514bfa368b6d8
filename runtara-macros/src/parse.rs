//! A typed view of the function under `#[durable]`, keeping the original syntax nodes
//! so every error can point at the token at fault.

use syn::{FnArg, Ident, ItemFn, Pat, PatType, Receiver, ReturnType, Type};

/// One argument other than the receiver.
pub(crate) struct Argument<'a> {
    /// The whole `pattern: Type` node.
    pub(crate) node: &'a PatType,
    /// The name, when the pattern is a plain `name` (not `mut name`, `ref name`, a
    /// tuple, a struct, `_`, …). Other patterns are bound to a generated name in the
    /// expanded signature and destructured inside the body.
    pub(crate) name: Option<&'a Ident>,
}

/// The function as `#[durable]` sees it.
pub(crate) struct DurableFn<'a> {
    pub(crate) item: &'a ItemFn,
    pub(crate) receiver: Option<&'a Receiver>,
    pub(crate) arguments: Vec<Argument<'a>>,
    /// The declared return type, if any.
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
                    let name = match &*node.pat {
                        Pat::Ident(p)
                            if p.by_ref.is_none()
                                && p.mutability.is_none()
                                && p.subpat.is_none() =>
                        {
                            Some(&p.ident)
                        }
                        _ => None,
                    };
                    arguments.push(Argument { node, name });
                }
            }
        }
        let output = match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        DurableFn {
            item,
            receiver,
            arguments,
            output,
        }
    }

    /// The idempotency key: the first argument after any receiver.
    pub(crate) fn key(&self) -> Option<&Argument<'a>> {
        self.arguments.first()
    }
}

/// The last path segment of `ty` when it is named `Result` (aliases included).
pub(crate) fn result_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .filter(|segment| segment.ident == "Result"),
        Type::Paren(inner) => result_segment(&inner.elem),
        Type::Group(inner) => result_segment(&inner.elem),
        _ => None,
    }
}

/// Whether a receiver is a shared reference (`&self`, `&'a self`, `self: &Self`), which
/// every attempt of a retried call can copy.
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
    use quote::ToTokens;

    fn item(source: &str) -> ItemFn {
        syn::parse_str(source).unwrap()
    }

    #[test]
    fn plain_names_and_patterns() {
        let f = item("async fn f(&self, key: String, mut n: u8, (a, b): (u8, u8)) -> Result<u8, E> { todo!() }");
        let view = DurableFn::new(&f);
        assert!(view.receiver.is_some());
        let names: Vec<_> = view
            .arguments
            .iter()
            .map(|a| a.name.map(ToString::to_string))
            .collect();
        assert_eq!(names, [Some("key".to_owned()), None, None]);
        assert_eq!(
            view.key().and_then(|k| k.name).map(ToString::to_string),
            Some("key".to_owned())
        );
    }

    #[test]
    fn result_types_are_recognised_by_their_last_segment() {
        let segment = |source: &str| {
            let ty: Type = syn::parse_str(source).unwrap();
            result_segment(&ty).map(|s| s.to_token_stream().to_string())
        };
        assert_eq!(
            segment("std::result::Result<Receipt, MyError>").as_deref(),
            Some("Result < Receipt , MyError >")
        );
        assert_eq!(
            segment("anyhow::Result<u8>").as_deref(),
            Some("Result < u8 >")
        );
        assert_eq!(segment("Option<u8>"), None);
        assert_eq!(segment("<T as Trait>::Result"), None);
        assert_eq!(segment("(u8, u8)"), None);
    }

    #[test]
    fn shared_receivers() {
        let receiver = |source: &str| {
            let f = item(source);
            let view = DurableFn::new(&f);
            view.receiver.map(is_shared_reference)
        };
        assert_eq!(receiver("async fn f(&self) {}"), Some(true));
        assert_eq!(receiver("async fn f(&'a self) {}"), Some(true));
        assert_eq!(receiver("async fn f(self: &Self) {}"), Some(true));
        assert_eq!(receiver("async fn f(&mut self) {}"), Some(false));
        assert_eq!(receiver("async fn f(self) {}"), Some(false));
        assert_eq!(receiver("async fn f(self: Arc<Self>) {}"), Some(false));
        assert_eq!(receiver("async fn f(self: Pin<&mut Self>) {}"), Some(false));
    }
}
