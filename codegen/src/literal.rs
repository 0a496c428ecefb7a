//! Rust expressions of runtime values embedded in generated crates (their [`cellmap_runtime::Plan`]),
//! and of the spec's normalized text (see [`cellmap_schema::Spec::to_normalized`]): a generated crate
//! rebuilds its spec from that text through validation, never from a struct literal.

mod plan;

pub(crate) use plan::plan_expr;

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use cellmap_schema::Split;

/// Path of the schema crate as seen from a generated crate.
fn s() -> TokenStream {
    quote!(::cellmap_runtime::cellmap_schema)
}

/// An `f64` expression (non-finite values as constants).
pub(crate) fn f64_expr(v: f64) -> TokenStream {
    if v.is_nan() {
        quote!(f64::NAN)
    } else if v == f64::INFINITY {
        quote!(f64::INFINITY)
    } else if v == f64::NEG_INFINITY {
        quote!(f64::NEG_INFINITY)
    } else {
        let l = Literal::f64_suffixed(v);
        quote!(#l)
    }
}

fn f64_array(v: &[f64; 3]) -> TokenStream {
    let [a, b, c] = v.map(f64_expr);
    quote!([#a, #b, #c])
}

fn usize_array(v: &[usize; 3]) -> TokenStream {
    let [a, b, c] = v.map(Literal::usize_unsuffixed);
    quote!([#a, #b, #c])
}

fn string(v: &str) -> TokenStream {
    quote!(::std::string::String::from(#v))
}

fn strings(v: &[String]) -> TokenStream {
    let items = v.iter().map(|x| string(x));
    quote!(::std::vec![#(#items),*])
}

fn option<T>(v: &Option<T>, f: impl Fn(&T) -> TokenStream) -> TokenStream {
    match v {
        Some(x) => {
            let x = f(x);
            quote!(::std::option::Option::Some(#x))
        }
        None => quote!(::std::option::Option::None),
    }
}

/// A raw string literal of `text` (`r#"…"#` with as many `#` as it needs), so that embedded JSON
/// stays readable in generated files.
pub(crate) fn raw_string(text: &str) -> TokenStream {
    let hashes = (0..)
        .map(|n| "#".repeat(n))
        .find(|h| !text.contains(&format!("\"{h}")))
        .unwrap_or_default();
    let source = format!("r{hashes}\"{text}\"{hashes}");
    match source.parse::<Literal>() {
        Ok(l) => quote!(#l),
        // Not reached (a raw string holds any text without its closing quote), but an ordinary
        // literal is equal.
        Err(_) => {
            let l = Literal::string(text);
            quote!(#l)
        }
    }
}

fn split_expr(split: Split) -> TokenStream {
    let s = s();
    match split {
        Split::Train => quote!(#s::Split::Train),
        Split::Validate => quote!(#s::Split::Validate),
        Split::Test => quote!(#s::Split::Test),
    }
}
