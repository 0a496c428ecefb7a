//! Rust expressions that rebuild a [`Plan`] (embedded in generated crates, so that their loaders
//! open the data without planning it again).

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use cellmap_runtime::{
    ArrayLayout, Box3, CentreGrid, ClassCount, ClassPlan, ClassWeight, DatasetPlan, Excluded, LevelPlan, Plan,
    SplitClassWeights,
};

use super::{f64_array, f64_expr, option, split_expr, string, strings, usize_array};

/// Path of the runtime crate as seen from a generated crate.
fn r() -> TokenStream {
    quote!(::cellmap_runtime)
}

fn u64_array(v: &[u64; 3]) -> TokenStream {
    let [a, b, c] = v.map(Literal::u64_suffixed);
    quote!([#a, #b, #c])
}

/// The expression `cellmap_runtime::Plan { … }` equal to `plan`.
pub(crate) fn plan_expr(plan: &Plan) -> TokenStream {
    let r = r();
    let name = string(&plan.name);
    let batch_size = Literal::usize_suffixed(plan.batch.batch_size);
    let arrays = plan.batch.arrays.iter().map(array_layout_expr);
    let batch_bytes = Literal::u64_suffixed(plan.batch_bytes);
    let prefetch = Literal::usize_suffixed(plan.prefetch);
    let ring_bytes = Literal::u64_suffixed(plan.ring_bytes);
    let datasets = plan.datasets.iter().map(dataset_expr);
    let excluded = plan.excluded.iter().map(excluded_expr);
    let warnings = strings(&plan.warnings);
    let class_weights = plan.class_weights.iter().map(split_weights_expr);
    quote! {
        #r::Plan {
            name: #name,
            batch: #r::BatchLayout {
                batch_size: #batch_size,
                arrays: ::std::vec![#(#arrays),*],
            },
            batch_bytes: #batch_bytes,
            prefetch: #prefetch,
            ring_bytes: #ring_bytes,
            datasets: ::std::vec![#(#datasets),*],
            excluded: ::std::vec![#(#excluded),*],
            warnings: #warnings,
            class_weights: ::std::vec![#(#class_weights),*],
        }
    }
}

fn split_weights_expr(w: &SplitClassWeights) -> TokenStream {
    let r = r();
    let split = split_expr(w.split);
    let classes = w.classes.iter().map(class_weight_expr);
    let unannotated = strings(&w.unannotated);
    quote! {
        #r::SplitClassWeights {
            split: #split,
            classes: ::std::vec![#(#classes),*],
            unannotated: #unannotated,
        }
    }
}

fn class_weight_expr(w: &ClassWeight) -> TokenStream {
    let r = r();
    let class = string(&w.class);
    let (foreground, background) = (Literal::u64_suffixed(w.foreground), Literal::u64_suffixed(w.background));
    let weight = f64_expr(w.weight);
    quote!(#r::ClassWeight { class: #class, foreground: #foreground, background: #background, weight: #weight })
}

fn array_layout_expr(a: &ArrayLayout) -> TokenStream {
    let r = r();
    let name = string(&a.name);
    let channels = Literal::usize_suffixed(a.channels);
    let shape = usize_array(&a.shape_vox);
    let dtype = output_dtype_expr(a.dtype);
    let dims = Literal::usize_suffixed(a.spatial_dims);
    quote!(#r::ArrayLayout { name: #name, channels: #channels, shape_vox: #shape, dtype: #dtype, spatial_dims: #dims })
}

fn output_dtype_expr(dtype: cellmap_schema::OutputDtype) -> TokenStream {
    use cellmap_schema::OutputDtype;
    match dtype {
        OutputDtype::Float32 => quote!(::cellmap_runtime::cellmap_schema::OutputDtype::Float32),
        OutputDtype::Float16 => quote!(::cellmap_runtime::cellmap_schema::OutputDtype::Float16),
        OutputDtype::Bfloat16 => quote!(::cellmap_runtime::cellmap_schema::OutputDtype::Bfloat16),
        OutputDtype::Uint8 => quote!(::cellmap_runtime::cellmap_schema::OutputDtype::Uint8),
    }
}

fn dataset_expr(d: &DatasetPlan) -> TokenStream {
    let r = r();
    let split = split_expr(d.split);
    let index = Literal::usize_suffixed(d.index);
    let origin = string(&d.origin);
    let raw = string(&d.raw);
    let inputs = d.inputs.iter().map(level_expr);
    let targets = d.targets.iter().map(|classes| {
        let classes = classes.iter().map(class_expr);
        quote!(::std::vec![#(#classes),*])
    });
    let bbox = box_expr(&d.bbox_nm);
    let grid = grid_expr(&d.grid);
    let tiles = grid_expr(&d.tiles);
    let counts = option(&d.class_counts, |counts| {
        let counts = counts.iter().map(count_expr);
        quote!(::std::vec![#(#counts),*])
    });
    let pad = d.pad;
    quote! {
        #r::DatasetPlan {
            split: #split,
            index: #index,
            origin: #origin,
            raw: #raw,
            inputs: ::std::vec![#(#inputs),*],
            targets: ::std::vec![#(#targets),*],
            bbox_nm: #bbox,
            grid: #grid,
            tiles: #tiles,
            class_counts: #counts,
            pad: #pad,
        }
    }
}

fn level_expr(l: &LevelPlan) -> TokenStream {
    let r = r();
    let group = string(&l.group);
    let level = Literal::usize_suffixed(l.level);
    let path = string(&l.path);
    let scale = f64_array(&l.scale_nm);
    let translation = f64_array(&l.translation_nm);
    let shape = u64_array(&l.shape_vox);
    let resampled = l.resampled;
    quote! {
        #r::LevelPlan {
            group: #group,
            level: #level,
            path: #path,
            scale_nm: #scale,
            translation_nm: #translation,
            shape_vox: #shape,
            resampled: #resampled,
        }
    }
}

fn class_expr(c: &ClassPlan) -> TokenStream {
    let r = r();
    match c {
        ClassPlan::Annotated(l) => {
            let l = level_expr(l);
            quote!(#r::ClassPlan::Annotated(#l))
        }
        ClassPlan::Inferred(related) => {
            let related = related.iter().map(|i| Literal::usize_suffixed(*i));
            quote!(#r::ClassPlan::Inferred(::std::vec![#(#related),*]))
        }
        ClassPlan::Unknown => quote!(#r::ClassPlan::Unknown),
    }
}

fn box_expr(b: &Box3) -> TokenStream {
    let r = r();
    let (lo, hi) = (f64_array(&b.lo_nm), f64_array(&b.hi_nm));
    quote!(#r::Box3 { lo_nm: #lo, hi_nm: #hi })
}

fn grid_expr(g: &CentreGrid) -> TokenStream {
    let r = r();
    let (origin, step, shape) = (f64_array(&g.origin_nm), f64_array(&g.step_nm), u64_array(&g.shape));
    quote!(#r::CentreGrid { origin_nm: #origin, step_nm: #step, shape: #shape })
}

fn count_expr(c: &ClassCount) -> TokenStream {
    let r = r();
    let (foreground, total) = (Literal::u64_suffixed(c.foreground), Literal::u64_suffixed(c.total));
    quote!(#r::ClassCount { foreground: #foreground, total: #total })
}

fn excluded_expr(e: &Excluded) -> TokenStream {
    let r = r();
    let split = split_expr(e.split);
    let index = Literal::usize_suffixed(e.index);
    let (origin, reason) = (string(&e.origin), string(&e.reason));
    quote!(#r::Excluded { split: #split, index: #index, origin: #origin, reason: #reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_weights_are_rebuilt_field_for_field() {
        let plan = Plan {
            name: "t".into(),
            batch: cellmap_runtime::BatchLayout {
                batch_size: 1,
                arrays: vec![],
            },
            batch_bytes: 0,
            prefetch: 1,
            ring_bytes: 0,
            datasets: vec![],
            excluded: vec![],
            warnings: vec![],
            class_weights: vec![SplitClassWeights {
                split: cellmap_schema::Split::Validate,
                classes: vec![
                    ClassWeight {
                        class: "mito".into(),
                        foreground: 3,
                        background: 7,
                        weight: 7.0 / 3.0,
                    },
                    ClassWeight {
                        class: "pm".into(),
                        foreground: 0,
                        background: 0,
                        weight: 1.0,
                    },
                ],
                unannotated: vec!["pm".into()],
            }],
        };
        let expr = plan_expr(&plan);
        syn::parse2::<syn::Expr>(expr.clone()).expect("an expression");
        let text = expr.to_string().replace(' ', "");
        assert!(
            text.contains(
                "class_weights:::std::vec![::cellmap_runtime::SplitClassWeights{split:::cellmap_runtime::cellmap_schema::Split::Validate,classes:::std::vec![::cellmap_runtime::ClassWeight{class:::std::string::String::from(\"mito\"),foreground:3u64,background:7u64,weight:2.3333333333333335f64}"
            ),
            "{text}"
        );
        assert!(text.contains("foreground:0u64,background:0u64,weight:1f64}"), "{text}");
        assert!(
            text.contains("unannotated:::std::vec![::std::string::String::from(\"pm\")]"),
            "{text}"
        );
    }
}
