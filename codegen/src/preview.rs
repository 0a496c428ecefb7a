//! Draw a batch as a PNG grid: one row per sample, the mid z-slice of the first input, then one
//! tile per class (raw in grey, the class in colour where it is 1, hatched where it is NaN =
//! unknown), then all classes over raw.

use std::path::Path;

use cellmap_schema::Spec;

/// Side of one tile in pixels.
const TILE: usize = 160;
/// Gap between tiles in pixels.
const GAP: usize = 4;

/// Class colours (RGB), cycled.
const COLOURS: [[u8; 3]; 8] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
];

/// An RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major RGB bytes.
    pub rgb: Vec<u8>,
}

impl Image {
    fn new(width: usize, height: usize) -> Self {
        Image {
            width,
            height,
            rgb: vec![24; width * height * 3],
        }
    }

    fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        let i = (y * self.width + x) * 3;
        self.rgb[i..i + 3].copy_from_slice(&c);
    }

    /// Write as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> std::io::Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut encoder = png::Encoder::new(file, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(&self.rgb).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    }
}

/// Render a batch. `arrays` are the batch arrays in layout order (inputs, then targets), each
/// `[B, C, Z, Y, X]`; `samples` is the number of positions holding a sample.
pub fn render(spec: &Spec, arrays: &[&[f32]], samples: usize) -> Image {
    let classes = spec.classes.len();
    let has_targets = !spec.targets.is_empty();
    let columns = 1 + if has_targets { classes + 1 } else { 0 };
    let mut image = Image::new(columns * (TILE + GAP) + GAP, samples * (TILE + GAP) + GAP);
    let Some(input) = spec.inputs.first() else { return image };
    let raw = arrays[0];
    let raw_voxels = input.voxels();
    let target = spec.targets.first();
    let labels = target.map(|_| arrays[spec.inputs.len()]);
    for s in 0..samples {
        let y0 = GAP + s * (TILE + GAP);
        let raw_slice = mid_slice(&raw[s * raw_voxels..(s + 1) * raw_voxels], input.shape_vox);
        let (lo, hi) = percentiles(&raw_slice.values);
        // Column 0: raw over its own extent.
        for py in 0..TILE {
            for px in 0..TILE {
                let v = raw_slice.at_fraction(py, px);
                image.put(GAP + px, y0 + py, grey(v, lo, hi));
            }
        }
        let (Some(target), Some(labels)) = (target, labels) else {
            continue;
        };
        let voxels = target.voxels();
        // Raw behind the label tiles spans the target's extent (arrays share the centre).
        let extent = |a: usize, shape: [usize; 3], vs: [f64; 3]| shape[a] as f64 * vs[a];
        let zoom = [
            extent(1, target.shape_vox, target.voxel_size_nm) / extent(1, input.shape_vox, input.voxel_size_nm),
            extent(2, target.shape_vox, target.voxel_size_nm) / extent(2, input.shape_vox, input.voxel_size_nm),
        ];
        let raw_under = |py: usize, px: usize| {
            let fy = 0.5 + (py as f64 + 0.5 - TILE as f64 / 2.0) / TILE as f64 * zoom[0];
            let fx = 0.5 + (px as f64 + 0.5 - TILE as f64 / 2.0) / TILE as f64 * zoom[1];
            raw_slice.at_unit(fy, fx)
        };
        let channel_slices: Vec<Slice> = (0..classes)
            .map(|c| {
                let start = (s * classes + c) * voxels;
                mid_slice(&labels[start..start + voxels], target.shape_vox)
            })
            .collect();
        for c in 0..=classes {
            let x0 = GAP + (c + 1) * (TILE + GAP);
            for py in 0..TILE {
                for px in 0..TILE {
                    let base = grey(raw_under(py, px), lo, hi);
                    let mut colour = base;
                    let mut unknown = false;
                    let picked = if c < classes { c..c + 1 } else { 0..classes };
                    for k in picked {
                        let v = channel_slices[k].at_fraction(py, px).unwrap_or(f32::NAN);
                        if v.is_nan() {
                            unknown = c < classes;
                        } else if v > 0.5 {
                            colour = blend(colour, COLOURS[k % COLOURS.len()], 0.55);
                        }
                    }
                    if unknown {
                        // Hatching: unknown (NaN) voxels show diagonal stripes over dimmed raw.
                        colour = if (px + py) % 8 < 2 {
                            [200, 200, 200]
                        } else {
                            blend(base, [40, 40, 40], 0.6)
                        };
                    }
                    image.put(x0 + px, y0 + py, colour);
                }
            }
        }
    }
    image
}

/// One z-slice of a `[z, y, x]` volume.
struct Slice {
    values: Vec<f32>,
    height: usize,
    width: usize,
}

impl Slice {
    /// Value at tile pixel `(py, px)`, sampling the slice's whole extent.
    fn at_fraction(&self, py: usize, px: usize) -> Option<f32> {
        self.at_unit((py as f64 + 0.5) / TILE as f64, (px as f64 + 0.5) / TILE as f64)
    }

    /// Value at unit coordinates in `[0, 1)`, `None` outside.
    fn at_unit(&self, fy: f64, fx: f64) -> Option<f32> {
        if !(0.0..1.0).contains(&fy) || !(0.0..1.0).contains(&fx) {
            return None;
        }
        let y = (fy * self.height as f64) as usize;
        let x = (fx * self.width as f64) as usize;
        self.values.get(y * self.width + x).copied()
    }
}

fn mid_slice(volume: &[f32], shape: [usize; 3]) -> Slice {
    let [z, y, x] = shape;
    let plane = y * x;
    let start = (z / 2) * plane;
    Slice {
        values: volume[start..start + plane].to_vec(),
        height: y,
        width: x,
    }
}

/// 1st and 99th percentile of the finite values.
fn percentiles(values: &[f32]) -> (f32, f32) {
    let mut v: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f32::total_cmp);
    let lo = v[v.len() / 100];
    let hi = v[(v.len() * 99) / 100];
    if hi > lo { (lo, hi) } else { (lo, lo + 1.0) }
}

fn grey(v: Option<f32>, lo: f32, hi: f32) -> [u8; 3] {
    match v {
        Some(v) if v.is_finite() => {
            let g = (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0) as u8;
            [g, g, g]
        }
        _ => [0, 0, 0],
    }
}

fn blend(a: [u8; 3], b: [u8; 3], alpha: f32) -> [u8; 3] {
    std::array::from_fn(|i| (f32::from(a[i]) * (1.0 - alpha) + f32::from(b[i]) * alpha) as u8)
}
