//! Rust expressions that rebuild a validated [`Spec`] (embedded in generated crates, so they
//! never parse YAML at run time).

mod plan;

pub(crate) use plan::plan_expr;

use std::collections::BTreeMap;

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use cellmap_schema::{
    ArraySpec, Augment, Axis, DatasetSpec, Device, Elastic, ErrorPolicy, ForegroundBias, Interpolation, LoaderSpec,
    OutputDtype, Predict, PredictDtype, PredictRegion, Sampling, Spatial, Spec, Split, TargetTemplate, ValueTransform,
    Weighting,
};

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

/// An `f32` expression (non-finite values as constants).
pub(crate) fn f32_expr(v: f32) -> TokenStream {
    if v.is_nan() {
        quote!(f32::NAN)
    } else if v == f32::INFINITY {
        quote!(f32::INFINITY)
    } else if v == f32::NEG_INFINITY {
        quote!(f32::NEG_INFINITY)
    } else {
        let l = Literal::f32_suffixed(v);
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

/// The expression `cellmap_schema::Spec { … }` equal to `spec`.
pub(crate) fn spec_expr(spec: &Spec) -> TokenStream {
    let s = s();
    let version = spec.version;
    let name = string(&spec.name);
    let source = spec.source.display().to_string();
    let classes = strings(&spec.classes);
    let relations = spec.class_relations.iter().map(|(k, v)| {
        let k = string(k);
        let v = v.iter().map(|x| string(x));
        quote!((#k, ::std::collections::BTreeSet::from([#(#v),*])))
    });
    let inputs = spec.inputs.iter().map(array_expr);
    let targets = spec.targets.iter().map(array_expr);
    let datasets = spec.datasets.iter().map(dataset_expr);
    let sampling = sampling_expr(&spec.sampling);
    let augment = augment_expr(&spec.augment);
    let loader = loader_expr(&spec.loader);
    let predict = option(&spec.predict, predict_expr);
    quote! {
        #s::Spec {
            version: #version,
            name: #name,
            source: ::std::path::PathBuf::from(#source),
            classes: #classes,
            class_relations: ::std::collections::BTreeMap::from([#(#relations),*]),
            inputs: ::std::vec![#(#inputs),*],
            targets: ::std::vec![#(#targets),*],
            datasets: ::std::vec![#(#datasets),*],
            sampling: #sampling,
            augment: #augment,
            loader: #loader,
            predict: #predict,
        }
    }
}

fn predict_expr(p: &Predict) -> TokenStream {
    let s = s();
    let raw = strings(&p.raw);
    let inputs = p.inputs.iter().map(|i| Literal::usize_unsuffixed(*i));
    let output = string(&p.output);
    let model_classes = strings(&p.model_classes);
    let classes = p.classes.iter().map(|i| Literal::usize_unsuffixed(*i));
    let voxel = f64_array(&p.voxel_size_nm);
    let dtype = match p.dtype {
        PredictDtype::Float32 => quote!(#s::PredictDtype::Float32),
        PredictDtype::Uint8 => quote!(#s::PredictDtype::Uint8),
    };
    let zarr_format = p.zarr_format;
    let region = match &p.region {
        PredictRegion::Raw => quote!(#s::PredictRegion::Raw),
        PredictRegion::Validation => quote!(#s::PredictRegion::Validation),
        PredictRegion::Bounds { lo_nm, hi_nm } => {
            let (lo, hi) = (f64_array(lo_nm), f64_array(hi_nm));
            quote!(#s::PredictRegion::Bounds { lo_nm: #lo, hi_nm: #hi })
        }
    };
    let tile = usize_array(&p.tile_vox);
    let context = usize_array(&p.context_vox);
    quote! {
        #s::Predict {
            raw: #raw,
            inputs: ::std::vec![#(#inputs),*],
            output: #output,
            model_classes: #model_classes,
            classes: ::std::vec![#(#classes),*],
            voxel_size_nm: #voxel,
            dtype: #dtype,
            zarr_format: #zarr_format,
            region: #region,
            tile_vox: #tile,
            context_vox: #context,
        }
    }
}

fn array_expr(a: &ArraySpec) -> TokenStream {
    let s = s();
    let name = string(&a.name);
    let shape = usize_array(&a.shape_vox);
    let voxel = f64_array(&a.voxel_size_nm);
    let interpolation = match a.interpolation {
        Interpolation::Nearest => quote!(#s::Interpolation::Nearest),
        Interpolation::Linear => quote!(#s::Interpolation::Linear),
    };
    let dtype = match a.dtype {
        OutputDtype::Float32 => quote!(#s::OutputDtype::Float32),
        OutputDtype::Float16 => quote!(#s::OutputDtype::Float16),
        OutputDtype::Uint8 => quote!(#s::OutputDtype::Uint8),
    };
    quote!(#s::ArraySpec { name: #name, shape_vox: #shape, voxel_size_nm: #voxel, interpolation: #interpolation, dtype: #dtype })
}

fn split_expr(split: Split) -> TokenStream {
    let s = s();
    match split {
        Split::Train => quote!(#s::Split::Train),
        Split::Validate => quote!(#s::Split::Validate),
        Split::Test => quote!(#s::Split::Test),
    }
}

fn dataset_expr(d: &DatasetSpec) -> TokenStream {
    let s = s();
    let split = split_expr(d.split);
    let index = d.index;
    let raw = string(&d.raw);
    let origin = string(&d.origin);
    let targets = option(&d.targets, |t: &TargetTemplate| {
        let template = string(&t.template);
        let annotated = option(&t.annotated, |a| strings(a));
        quote!(#s::TargetTemplate { template: #template, annotated: #annotated })
    });
    quote!(#s::DatasetSpec { split: #split, index: #index, raw: #raw, targets: #targets, origin: #origin })
}

fn sampling_expr(v: &Sampling) -> TokenStream {
    let s = s();
    let seed = v.seed;
    let iterations = v.iterations_per_epoch;
    let weighting = match v.weighting {
        Weighting::Uniform => quote!(#s::Weighting::Uniform),
        Weighting::ClassBalanced => quote!(#s::Weighting::ClassBalanced),
        Weighting::VoxelWeighted => quote!(#s::Weighting::VoxelWeighted),
    };
    let foreground = option(&v.foreground, |f: &ForegroundBias| {
        let class = string(&f.class);
        let fraction = f64_expr(f.fraction);
        quote!(#s::ForegroundBias { class: #class, fraction: #fraction })
    });
    let (train, validate) = (v.pad.train, v.pad.validate);
    let pad_inputs = f32_expr(v.pad_value_inputs);
    let pad_targets = f32_expr(v.pad_value_targets);
    let tiling = v.validation_tiling;
    quote! {
        #s::Sampling {
            seed: #seed,
            iterations_per_epoch: #iterations,
            weighting: #weighting,
            foreground: #foreground,
            pad: #s::PadPolicy { train: #train, validate: #validate },
            pad_value_inputs: #pad_inputs,
            pad_value_targets: #pad_targets,
            validation_tiling: #tiling,
        }
    }
}

fn axis_expr(a: Axis) -> TokenStream {
    let s = s();
    match a {
        Axis::Z => quote!(#s::Axis::Z),
        Axis::Y => quote!(#s::Axis::Y),
        Axis::X => quote!(#s::Axis::X),
    }
}

fn augment_expr(a: &Augment) -> TokenStream {
    let s = s();
    let spatial = spatial_expr(&a.spatial);
    let inputs = transforms_expr(&a.inputs);
    let targets = transforms_expr(&a.targets);
    let per_class = per_class_expr(&a.per_class);
    let v = &a.validate;
    let (validate_inputs, validate_targets) = (transforms_expr(&v.inputs), transforms_expr(&v.targets));
    let validate_per_class = per_class_expr(&v.per_class);
    quote! {
        #s::Augment {
            spatial: #spatial,
            inputs: #inputs,
            targets: #targets,
            per_class: #per_class,
            validate: #s::ValidationTransforms {
                inputs: #validate_inputs,
                targets: #validate_targets,
                per_class: #validate_per_class,
            },
        }
    }
}

fn per_class_expr(v: &BTreeMap<String, Vec<ValueTransform>>) -> TokenStream {
    let entries = v.iter().map(|(k, v)| {
        let k = string(k);
        let v = transforms_expr(v);
        quote!((#k, #v))
    });
    quote!(::std::collections::BTreeMap::from([#(#entries),*]))
}

fn spatial_expr(v: &Spatial) -> TokenStream {
    let s = s();
    let mirror = f64_array(&v.mirror);
    let transpose = v.transpose.iter().map(|a| axis_expr(*a));
    let rotate = v.rotate.iter().map(|r| {
        option(r, |(lo, hi)| {
            let (lo, hi) = (f64_expr(*lo), f64_expr(*hi));
            quote!((#lo, #hi))
        })
    });
    let elastic = option(&v.elastic, |e: &Elastic| {
        let spacing = f64_array(&e.spacing_nm);
        let sigma = f64_expr(e.sigma_nm);
        let p = f64_expr(e.probability);
        quote!(#s::Elastic { spacing_nm: #spacing, sigma_nm: #sigma, probability: #p })
    });
    quote! {
        #s::Spatial {
            mirror: #mirror,
            transpose: ::std::vec![#(#transpose),*],
            rotate: [#(#rotate),*],
            elastic: #elastic,
        }
    }
}

fn transforms_expr(v: &[ValueTransform]) -> TokenStream {
    let s = s();
    let items = v.iter().map(|t| match t {
        ValueTransform::Normalize { shift, scale } => {
            let (shift, scale) = (f64_expr(*shift), f64_expr(*scale));
            quote!(#s::ValueTransform::Normalize { shift: #shift, scale: #scale })
        }
        ValueTransform::Binarize { threshold } => {
            let threshold = f64_expr(*threshold);
            quote!(#s::ValueTransform::Binarize { threshold: #threshold })
        }
        ValueTransform::NanToNum { nan, posinf, neginf } => {
            let nan = f64_expr(*nan);
            let posinf = option(posinf, |v| f64_expr(*v));
            let neginf = option(neginf, |v| f64_expr(*v));
            quote!(#s::ValueTransform::NanToNum { nan: #nan, posinf: #posinf, neginf: #neginf })
        }
        ValueTransform::GaussianNoise { mean, std } => {
            let (mean, std) = (f64_expr(*mean), f64_expr(*std));
            quote!(#s::ValueTransform::GaussianNoise { mean: #mean, std: #std })
        }
        ValueTransform::RandomContrast { range: (lo, hi) } => {
            let (lo, hi) = (f64_expr(*lo), f64_expr(*hi));
            quote!(#s::ValueTransform::RandomContrast { range: (#lo, #hi) })
        }
        ValueTransform::RandomGamma { range: (lo, hi) } => {
            let (lo, hi) = (f64_expr(*lo), f64_expr(*hi));
            quote!(#s::ValueTransform::RandomGamma { range: (#lo, #hi) })
        }
        ValueTransform::GaussianBlur { sigma_vox, radius_vox } => {
            let sigma = f64_array(sigma_vox);
            let radius = Literal::usize_unsuffixed(*radius_vox);
            quote!(#s::ValueTransform::GaussianBlur { sigma_vox: #sigma, radius_vox: #radius })
        }
    });
    quote!(::std::vec![#(#items),*])
}

fn loader_expr(v: &LoaderSpec) -> TokenStream {
    let s = s();
    let (batch, workers, prefetch) = (v.batch_size, v.workers, v.prefetch);
    let device = match v.device {
        Device::Cpu => quote!(#s::Device::Cpu),
        Device::Cuda(n) => quote!(#s::Device::Cuda(#n)),
    };
    let pin = v.pin_memory;
    let cache = v.cache_bytes;
    let on_error = match v.on_error {
        ErrorPolicy::Fail => quote!(#s::ErrorPolicy::Fail),
        ErrorPolicy::SkipAndLog => quote!(#s::ErrorPolicy::SkipAndLog),
    };
    quote! {
        #s::LoaderSpec {
            batch_size: #batch,
            workers: #workers,
            prefetch: #prefetch,
            device: #device,
            pin_memory: #pin,
            cache_bytes: #cache,
            on_error: #on_error,
        }
    }
}
