//! Link settings for the `torch` feature: an rpath to libtorch so that tests and binaries run
//! without `LD_LIBRARY_PATH`, and, for a CUDA build (`CELLMAP_TORCH_CUDA=1`), `libtorch.so`
//! kept linked so that `libtorch_cuda` is loaded (tch-rs issue 980). The CPU-only libtorch
//! must not be linked that way: `-ltorch` with `--no-as-needed` pulls the whole CUDA stack.

fn main() {
    println!("cargo:rerun-if-env-changed=CELLMAP_TORCH_CUDA");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
    }
    if std::env::var("CELLMAP_TORCH_CUDA").is_ok_and(|v| v == "1") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
