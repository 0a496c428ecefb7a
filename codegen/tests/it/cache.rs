//! `cellmap-compile cache`: the spec's training cache written, brought up to date, read through
//! by `bench` (issue #15).

use crate::bin;

#[test]
fn cache_writes_keeps_and_bench_reads_through_the_training_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = bin().args(["synth", "--small"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spec = data.join("spec.yaml");
    let cache = tmp.path().join("cache");

    // No folder named: exit 1, saying where to name one.
    let out = bin().arg("cache").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--out") && err.contains("training_cache"), "{err}");

    let out = bin().arg("cache").arg(&spec).arg("--out").arg(&cache).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("1 arrays copied") && text.contains("0 current and kept"),
        "{text}"
    );
    assert!(
        text.contains(&format!("add `training_cache: {}`", cache.display())),
        "{text}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cache.join("manifest.json")).unwrap()).unwrap();
    let packs = manifest["packs"].as_array().unwrap().len();
    assert!(packs >= 1, "{manifest}");

    // Again: everything is current.
    let out = bin().arg("cache").arg(&spec).arg("--out").arg(&cache).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "0 arrays copied, 0 packs (0 classes) written, {} current and kept",
            packs + 1
        )),
        "{text}"
    );

    let out = bin()
        .arg("bench")
        .arg(&spec)
        .args([
            "--batches",
            "2",
            "--warmup",
            "1",
            "--quiet",
            "--no-cache",
            "--training-cache",
        ])
        .arg(&cache)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("training cache misses"), "{text}");
    let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(report["training_cache_fallbacks"], 0, "{report}");

    // A spec naming the cache: `plan` says every level read comes from it.
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("\nloader:\n"), "{text}");
    let named = data.join("cached.yaml");
    std::fs::write(
        &named,
        text.replace(
            "\nloader:\n",
            &format!("\nloader:\n  training_cache: {}\n", cache.display()),
        ),
    )
    .unwrap();
    let out = bin().arg("plan").arg(&named).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text
        .lines()
        .find(|l| l.starts_with("training cache "))
        .expect("a training cache line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let (cached, read) = (words[3], words[6]);
    assert!(cached == read && cached.parse::<usize>().unwrap() > 1, "{line}");

    // `check --data`: no word of it while the cache is there; a warning (exit 0) naming the fix
    // when the folder holds none.
    let out = bin().args(["check", "--data"]).arg(&named).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && !all.contains("training cache"), "{all}");
    let missing = data.join("missing.yaml");
    let text = std::fs::read_to_string(&named).unwrap();
    std::fs::write(&missing, text.replace(&cache.display().to_string(), "no-cache-here")).unwrap();
    let out = bin().args(["check", "--data"]).arg(&missing).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("missing.yaml:") && all.contains("warning") && all.contains("manifest.json does not exist"),
        "{all}"
    );
    assert!(all.contains("cellmap-compile cache"), "{all}");
}
