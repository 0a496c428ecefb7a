//! Trains a small 3D convolutional network on the synthetic dataset through the loader crate
//! generated from `train.yaml`, with a binary cross-entropy that ignores unknown (NaN) targets.
//! Prints the loss and samples/s; writes the loss curve as a PNG.
//!
//! `bash examples/train/run.sh [STEPS]`

use std::time::Instant;

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Kind, Reduction, Tensor};

fn network(vs: &nn::Path, classes: i64) -> impl Module + use<> {
    let conv = |name: &str, i: i64, o: i64, k: i64| {
        let config = nn::ConvConfig { padding: k / 2, ..Default::default() };
        nn::conv3d(vs / name, i, o, k, config)
    };
    nn::seq()
        .add(conv("c1", 1, 16, 3))
        .add_fn(|x| x.relu())
        .add(conv("c2", 16, 16, 3))
        .add_fn(|x| x.relu())
        .add(conv("c3", 16, 16, 3))
        .add_fn(|x| x.relu())
        .add(conv("out", 16, classes, 1))
}

/// Mean binary cross-entropy over the known (non-NaN) target voxels.
fn masked_loss(logits: &Tensor, targets: &Tensor) -> Tensor {
    let known = targets.isnan().logical_not().to_kind(Kind::Float);
    let targets = targets.nan_to_num(0.0, None::<f64>, None::<f64>);
    let per_voxel = logits.binary_cross_entropy_with_logits::<Tensor>(&targets, None, None, Reduction::None);
    (per_voxel * &known).sum(Kind::Float) / known.sum(Kind::Float).clamp_min(1.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let plot = args.next().unwrap_or_else(|| "train_loss.png".to_owned());
    tch::manual_seed(0);
    let mut loader = train_demo::torch::Loader::train()?;
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let net = network(&vs.root(), train_demo::CLASSES.len() as i64);
    let mut optimizer = nn::Adam::default().build(&vs, 2e-3)?;
    let mut losses = Vec::with_capacity(steps);
    let start = Instant::now();
    for step in 0..steps {
        let Some(batch) = loader.next_batch() else { break };
        let batch = batch?;
        let loss = masked_loss(&net.forward(batch.raw()), batch.labels());
        optimizer.backward_step(&loss);
        let value = loss.double_value(&[]);
        losses.push(value);
        if step % 20 == 0 || step + 1 == steps {
            let samples = (step + 1) * train_demo::BATCH_SIZE;
            println!(
                "step {step:>4}  epoch {}  loss {value:.4}  {:.1} samples/s",
                batch.epoch(),
                samples as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let first: f64 = losses.iter().take(20).sum::<f64>() / losses.len().clamp(1, 20) as f64;
    let last: f64 = losses.iter().rev().take(20).sum::<f64>() / losses.len().clamp(1, 20) as f64;
    println!("mean loss: first 20 steps {first:.4}, last 20 steps {last:.4}");
    draw_curve(&losses, &plot)?;
    println!("wrote {plot}");
    Ok(())
}

/// A plain line plot of the loss (white background, grey axes, blue curve).
fn draw_curve(losses: &[f64], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (w, h, margin) = (640usize, 360usize, 30usize);
    let mut rgb = vec![255u8; w * h * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        if x < w && y < h {
            rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
        }
    };
    for x in margin..w - margin {
        put(x, h - margin, [120, 120, 120]);
    }
    for y in margin..h - margin {
        put(margin, y, [120, 120, 120]);
    }
    let max = losses.iter().copied().fold(f64::MIN, f64::max);
    let min = losses.iter().copied().fold(f64::MAX, f64::min).min(max - 1e-9);
    let n = losses.len().max(2);
    let point = |i: usize, v: f64| {
        let x = margin + i * (w - 2 * margin - 1) / (n - 1);
        let y = h - margin - 1 - ((v - min) / (max - min) * (h - 2 * margin - 2) as f64) as usize;
        (x, y)
    };
    for (i, pair) in losses.windows(2).enumerate() {
        let (x0, y0) = point(i, pair[0]);
        let (x1, y1) = point(i + 1, pair[1]);
        let steps = x1.abs_diff(x0).max(y1.abs_diff(y0)).max(1);
        for s in 0..=steps {
            let x = x0 as f64 + (x1 as f64 - x0 as f64) * s as f64 / steps as f64;
            let y = y0 as f64 + (y1 as f64 - y0 as f64) * s as f64 / steps as f64;
            put(x as usize, y as usize, [31, 119, 180]);
            put(x as usize, y as usize + 1, [31, 119, 180]);
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&rgb)?;
    Ok(())
}
