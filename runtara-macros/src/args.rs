//! Parsing of `#[durable(max_retries = 5, strategy = ExponentialBackoff, delay = 500,
//! name = "billing::charge", crate = "acme::runtara")]`.
//!
//! Every mistake in the attribute is collected (not just the first) and reported at the
//! token at fault, with the valid choices listed.

use syn::parse::{Parse, ParseStream};
use syn::{Expr, Ident, Lit, Token};

mod kw {
    syn::custom_keyword!(max_retries);
    syn::custom_keyword!(strategy);
    syn::custom_keyword!(delay);
    syn::custom_keyword!(name);
}

const OPTIONS: &str = "`max_retries`, `strategy`, `delay`, `name`, `crate`";
const STRATEGIES: &str = "`ExponentialBackoff`, `FixedDelay`";

/// Default retries, as `runtara_sdk::RetryPolicy::DEFAULT_MAX_RETRIES`.
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default base delay in ms, as `runtara_sdk::RetryPolicy::DEFAULT_DELAY_MS`.
pub(crate) const DEFAULT_DELAY_MS: u64 = 1_000;

/// A retry strategy named in the attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrategyArg {
    ExponentialBackoff,
    FixedDelay,
}

impl StrategyArg {
    /// The name of the matching `runtara_sdk::Strategy` variant.
    pub(crate) fn variant_name(self) -> &'static str {
        match self {
            StrategyArg::ExponentialBackoff => "ExponentialBackoff",
            StrategyArg::FixedDelay => "FixedDelay",
        }
    }
}

/// The attribute's options; `None` means "use the default".
#[derive(Default)]
pub(crate) struct DurableArgs {
    pub(crate) max_retries: Option<u32>,
    pub(crate) strategy: Option<StrategyArg>,
    pub(crate) delay_ms: Option<u64>,
    /// The function's durable identity (`name = "module::function"`), when given.
    pub(crate) name: Option<String>,
    /// The path of the `runtara_sdk` crate (`crate = "acme::runtara"`), when given.
    pub(crate) krate: Option<syn::Path>,
}

impl std::fmt::Debug for DurableArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableArgs")
            .field("max_retries", &self.max_retries)
            .field("strategy", &self.strategy)
            .field("delay_ms", &self.delay_ms)
            .field("name", &self.name)
            .field(
                "krate",
                &self
                    .krate
                    .as_ref()
                    .map(|p| quote::ToTokens::to_token_stream(p).to_string()),
            )
            .finish()
    }
}

impl DurableArgs {
    /// The number of retries after the first attempt, defaults applied.
    pub(crate) fn retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    /// The retry strategy, defaults applied.
    pub(crate) fn strategy(&self) -> StrategyArg {
        self.strategy.unwrap_or(StrategyArg::ExponentialBackoff)
    }

    /// The base delay in milliseconds, defaults applied.
    pub(crate) fn delay_ms(&self) -> u64 {
        self.delay_ms.unwrap_or(DEFAULT_DELAY_MS)
    }
}

/// Collects errors so several can be reported at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }
}

impl Parse for DurableArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = DurableArgs::default();
        let mut errors = Errors::default();
        // A syntax error stops parsing, but the mistakes found before it are kept.
        if let Err(error) = parse_options(input, &mut args, &mut errors) {
            errors.push(error);
        }
        match errors.0 {
            Some(errors) => Err(errors),
            None => Ok(args),
        }
    }
}

fn parse_options(
    input: ParseStream<'_>,
    args: &mut DurableArgs,
    errors: &mut Errors,
) -> syn::Result<()> {
    while !input.is_empty() {
        let (name, span) = if input.peek(kw::max_retries) {
            ("max_retries", input.parse::<kw::max_retries>()?.span)
        } else if input.peek(kw::strategy) {
            ("strategy", input.parse::<kw::strategy>()?.span)
        } else if input.peek(kw::delay) {
            ("delay", input.parse::<kw::delay>()?.span)
        } else if input.peek(kw::name) {
            ("name", input.parse::<kw::name>()?.span)
        } else if input.peek(Token![crate]) {
            ("crate", input.parse::<Token![crate]>()?.span)
        } else {
            let unknown: Ident = input.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("expected a `#[durable]` option, one of: {OPTIONS}"),
                )
            })?;
            errors.push(syn::Error::new_spanned(
                &unknown,
                format!("unknown `#[durable]` option `{unknown}`; expected one of: {OPTIONS}"),
            ));
            if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                input.parse::<Expr>()?;
            }
            next_option(input)?;
            continue;
        };
        input.parse::<Token![=]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("expected `=` after `{name}`, as in `{name} = …`"),
            )
        })?;
        let value: Expr = input.parse()?;
        let duplicate = match name {
            "max_retries" => args.max_retries.is_some(),
            "strategy" => args.strategy.is_some(),
            "name" => args.name.is_some(),
            "crate" => args.krate.is_some(),
            _ => args.delay_ms.is_some(),
        };
        if duplicate {
            errors.push(syn::Error::new(
                span,
                format!("duplicate `#[durable]` option `{name}`; give each option once"),
            ));
        } else {
            let parsed = match name {
                "max_retries" => integer::<u32>(&value, name, "a non-negative integer such as `3`")
                    .map(|n| args.max_retries = Some(n)),
                "strategy" => strategy(&value).map(|s| args.strategy = Some(s)),
                "name" => identity(&value).map(|n| args.name = Some(n)),
                "crate" => crate_path(&value).map(|p| args.krate = Some(p)),
                _ => integer::<u64>(
                    &value,
                    name,
                    "a non-negative integer number of milliseconds such as `500`",
                )
                .map(|n| args.delay_ms = Some(n)),
            };
            if let Err(error) = parsed {
                errors.push(error);
            }
        }
        next_option(input)?;
    }
    Ok(())
}

fn next_option(input: ParseStream<'_>) -> syn::Result<()> {
    if !input.is_empty() {
        input
            .parse::<Token![,]>()
            .map_err(|e| syn::Error::new(e.span(), "expected `,` between `#[durable]` options"))?;
    }
    Ok(())
}

/// An unsigned integer literal that fits `N`.
fn integer<N>(value: &Expr, name: &str, expected: &str) -> syn::Result<N>
where
    N: std::str::FromStr + std::fmt::Display + Bounded,
    N::Err: std::fmt::Display,
{
    let Expr::Lit(syn::ExprLit {
        lit: Lit::Int(literal),
        ..
    }) = value
    else {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{name}` expects {expected}"),
        ));
    };
    literal.base10_parse::<N>().map_err(|_| {
        syn::Error::new_spanned(
            value,
            format!("`{name}` is too large; the largest value is {}", N::MAX),
        )
    })
}

/// The largest value of an integer option's type, for error messages.
trait Bounded {
    const MAX: Self;
}

impl Bounded for u32 {
    const MAX: Self = u32::MAX;
}

impl Bounded for u64 {
    const MAX: Self = u64::MAX;
}

/// A durable identity: a string literal such as `"charge"` or `"billing::v1::charge"`,
/// non-empty `::`-separated segments without whitespace.
fn identity(value: &Expr) -> syn::Result<String> {
    const EXPECTED: &str =
        "`name` expects a string such as `\"charge\"` or `\"billing::v1::charge\"`";
    let Expr::Lit(syn::ExprLit {
        lit: Lit::Str(literal),
        ..
    }) = value
    else {
        return Err(syn::Error::new_spanned(value, EXPECTED));
    };
    let name = literal.value();
    let valid = !name.is_empty()
        && !name.chars().any(char::is_whitespace)
        && name
            .split("::")
            .all(|segment| !segment.is_empty() && !segment.contains(':'));
    if !valid {
        return Err(syn::Error::new_spanned(
            value,
            format!("{EXPECTED}: `::`-separated names without spaces, not `{name}`"),
        ));
    }
    Ok(name)
}

/// The path of the `runtara_sdk` crate as a string, such as `"runtara_sdk"`,
/// `"::acme::runtara"` or `"crate::sdk"`: where a facade re-exports it, or where a
/// dependency renames it.
fn crate_path(value: &Expr) -> syn::Result<syn::Path> {
    const EXPECTED: &str = "`crate` expects the path of the `runtara_sdk` crate as a string, \
                            such as `\"runtara_sdk\"` or `\"acme::runtara\"`";
    let Expr::Lit(syn::ExprLit {
        lit: Lit::Str(literal),
        ..
    }) = value
    else {
        return Err(syn::Error::new_spanned(value, EXPECTED));
    };
    literal.parse_with(syn::Path::parse_mod_style).map_err(|_| {
        syn::Error::new_spanned(value, format!("{EXPECTED}, not `{}`", literal.value()))
    })
}

/// `ExponentialBackoff` or `FixedDelay`, also written as a path such as
/// `Strategy::FixedDelay`.
fn strategy(value: &Expr) -> syn::Result<StrategyArg> {
    let name = match value {
        Expr::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map(|s| s.ident.to_string())
        }
        _ => None,
    };
    match name.as_deref() {
        Some("ExponentialBackoff") => Ok(StrategyArg::ExponentialBackoff),
        Some("FixedDelay") => Ok(StrategyArg::FixedDelay),
        Some(other) => Err(syn::Error::new_spanned(
            value,
            format!("unknown retry strategy `{other}`; expected one of: {STRATEGIES}"),
        )),
        None => Err(syn::Error::new_spanned(
            value,
            format!("`strategy` expects one of: {STRATEGIES}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(tokens: &str) -> syn::Result<DurableArgs> {
        syn::parse_str::<DurableArgs>(tokens)
    }

    fn message(tokens: &str) -> String {
        parse(tokens)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn empty_means_defaults() {
        let args = parse("").unwrap();
        assert_eq!(
            (args.max_retries, args.strategy, args.delay_ms),
            (None, None, None)
        );
        assert_eq!(args.retries(), 3);
        assert_eq!(args.strategy(), StrategyArg::ExponentialBackoff);
        assert_eq!(args.delay_ms(), 1_000);
    }

    #[test]
    fn max_retries_parses() {
        assert_eq!(parse("max_retries = 5").unwrap().max_retries, Some(5));
        assert_eq!(parse("max_retries = 0").unwrap().retries(), 0);
    }

    #[test]
    fn strategy_parses() {
        let strategy = |s: &str| parse(s).unwrap().strategy;
        assert_eq!(
            strategy("strategy = FixedDelay"),
            Some(StrategyArg::FixedDelay)
        );
        assert_eq!(
            strategy("strategy = ExponentialBackoff"),
            Some(StrategyArg::ExponentialBackoff)
        );
        assert_eq!(
            strategy("strategy = runtara_sdk::Strategy::FixedDelay"),
            Some(StrategyArg::FixedDelay)
        );
    }

    #[test]
    fn delay_parses() {
        assert_eq!(parse("delay = 250").unwrap().delay_ms, Some(250));
        assert_eq!(parse("delay = 1_500").unwrap().delay_ms, Some(1_500));
    }

    #[test]
    fn every_option_together() {
        let args = parse("max_retries = 5, strategy = FixedDelay, delay = 250,").unwrap();
        assert_eq!(args.max_retries, Some(5));
        assert_eq!(args.strategy, Some(StrategyArg::FixedDelay));
        assert_eq!(args.delay_ms, Some(250));
    }

    #[test]
    fn unknown_option_lists_the_valid_ones() {
        assert_eq!(
            message("retries = 3"),
            "unknown `#[durable]` option `retries`; expected one of: `max_retries`, `strategy`, `delay`, `name`, `crate`"
        );
        assert_eq!(
            message("3"),
            "expected a `#[durable]` option, one of: `max_retries`, `strategy`, `delay`, `name`, `crate`"
        );
    }

    #[test]
    fn crate_parses_a_path() {
        let path = |s: &str| {
            let path = parse(s).unwrap().krate.unwrap();
            quote::ToTokens::to_token_stream(&path).to_string()
        };
        assert_eq!(path("crate = \"acme::runtara\""), "acme :: runtara");
        assert_eq!(path("crate = \"::runtara_sdk\""), ":: runtara_sdk");
        assert_eq!(path("crate = \"crate::sdk\""), "crate :: sdk");
        assert_eq!(
            message("crate = acme"),
            "`crate` expects the path of the `runtara_sdk` crate as a string, such as \
             `\"runtara_sdk\"` or `\"acme::runtara\"`"
        );
        assert_eq!(
            message("crate = \"acme runtara\""),
            "`crate` expects the path of the `runtara_sdk` crate as a string, such as \
             `\"runtara_sdk\"` or `\"acme::runtara\"`, not `acme runtara`"
        );
        assert_eq!(
            message("crate = \"a\", crate = \"b\""),
            "duplicate `#[durable]` option `crate`; give each option once"
        );
    }

    #[test]
    fn duplicate_option() {
        assert_eq!(
            message("delay = 1, delay = 2"),
            "duplicate `#[durable]` option `delay`; give each option once"
        );
    }

    #[test]
    fn bad_values() {
        let expects_integer = "`max_retries` expects a non-negative integer such as `3`";
        assert_eq!(message("max_retries = -1"), expects_integer);
        assert_eq!(message("max_retries = \"3\""), expects_integer);
        assert_eq!(message("max_retries = 1.5"), expects_integer);
        assert_eq!(
            message("max_retries = 5000000000"),
            "`max_retries` is too large; the largest value is 4294967295"
        );
        assert_eq!(
            message("delay = x"),
            "`delay` expects a non-negative integer number of milliseconds such as `500`"
        );
        assert_eq!(
            message("delay = 99999999999999999999999"),
            "`delay` is too large; the largest value is 18446744073709551615"
        );
        assert_eq!(
            message("strategy = Linear"),
            "unknown retry strategy `Linear`; expected one of: `ExponentialBackoff`, `FixedDelay`"
        );
        assert_eq!(
            message("strategy = 3"),
            "`strategy` expects one of: `ExponentialBackoff`, `FixedDelay`"
        );
    }

    #[test]
    fn syntax_errors_say_what_is_expected() {
        assert_eq!(
            message("max_retries 3"),
            "expected `=` after `max_retries`, as in `max_retries = …`"
        );
        assert_eq!(
            message("max_retries = 3 delay = 4"),
            "expected `,` between `#[durable]` options"
        );
    }

    #[test]
    fn several_mistakes_are_reported_together() {
        let error = parse("foo = 1, strategy = Linear").unwrap_err();
        assert_eq!(error.into_iter().count(), 2);
        // A syntax error after a mistake keeps the earlier mistake.
        let error = parse("foo = 1, max_retries").unwrap_err();
        assert_eq!(error.into_iter().count(), 2);
    }
}
