//! Draw a batch as a PNG grid: one row per sample, the mid z-slice of the first input, then one
//! tile per class (raw in grey, the class in colour where it is 1, hatched where it is NaN =
//! unknown), then all classes over raw. A header row names the columns (the input, each class
//! after a swatch of its colour, `all`), so the header is also the legend of the overlay colours.

mod font;

use std::path::Path;

use cellmap_schema::Spec;

/// Side of one tile in pixels.
const TILE: usize = 160;
/// Gap between tiles in pixels.
const GAP: usize = 4;
/// Height of the header row (column names and class colours) in pixels, above the first gap.
pub const HEADER: usize = 24;
/// Background colour.
const BACKGROUND: [u8; 3] = [24, 24, 24];
/// Colour of the header text.
const TEXT: [u8; 3] = [230, 230, 230];
/// Pixels between a class swatch and its name.
const SWATCH_GAP: usize = 4;

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
            rgb: BACKGROUND.repeat(width * height),
        }
    }

    fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        let i = (y * self.width + x) * 3;
        self.rgb[i..i + 3].copy_from_slice(&c);
    }

    /// The colour at `(x, y)`.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    fn fill(&mut self, x: usize, y: usize, width: usize, height: usize, c: [u8; 3]) {
        for py in y..(y + height).min(self.height) {
            for px in x..(x + width).min(self.width) {
                self.put(px, py, c);
            }
        }
    }

    /// Draw `text` in the 5×7 font, each font pixel a `scale`×`scale` block, top left at `(x, y)`.
    fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, c: [u8; 3]) {
        for (i, ch) in text.chars().enumerate() {
            let gx = x + i * font::ADVANCE * scale;
            for row in 0..font::HEIGHT {
                for col in 0..font::WIDTH {
                    if font::is_set(ch, row, col) {
                        self.fill(gx + col * scale, y + row * scale, scale, scale, c);
                    }
                }
            }
        }
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
    let classes = spec.classes().len();
    let has_targets = !spec.targets().is_empty();
    let columns = 1 + if has_targets { classes + 1 } else { 0 };
    let mut image = Image::new(columns * (TILE + GAP) + GAP, HEADER + samples * (TILE + GAP) + GAP);
    let Some(input) = spec.inputs().first() else {
        return image;
    };
    for (column, (name, swatch)) in header_labels(spec).into_iter().enumerate() {
        let label = Label::fit(GAP + column * (TILE + GAP), &name, swatch);
        if let Some(c) = label.swatch {
            let side = label.swatch_side();
            image.fill(label.x, label.y, side, side, c);
        }
        image.text(label.text_x(), label.y, &label.text, label.scale, TEXT);
    }
    let raw = arrays[0];
    let raw_voxels = input.voxels();
    let target = spec.targets().first();
    let labels = target.map(|_| arrays[spec.inputs().len()]);
    for s in 0..samples {
        let y0 = HEADER + GAP + s * (TILE + GAP);
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

/// The header label of each column: the first input's name, each class with its colour, `all`.
fn header_labels(spec: &Spec) -> Vec<(String, Option<[u8; 3]>)> {
    let mut out: Vec<(String, Option<[u8; 3]>)> = spec
        .inputs()
        .first()
        .map(|i| (i.name.clone(), None))
        .into_iter()
        .collect();
    if !spec.targets().is_empty() {
        out.extend(
            spec.classes()
                .iter()
                .enumerate()
                .map(|(k, c)| (c.clone(), Some(COLOURS[k % COLOURS.len()]))),
        );
        out.push(("all".to_owned(), None));
    }
    out
}

/// Where a column's label goes: a square swatch as tall as a digit (for a class), then the text,
/// centred over the column; font scale 2 where the label fits, else 1, else cut with `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Label {
    text: String,
    swatch: Option<[u8; 3]>,
    scale: usize,
    /// Left edge of the swatch (or of the text without one).
    x: usize,
    /// Top of the swatch and of the text.
    y: usize,
}

impl Label {
    fn fit(column_x: usize, text: &str, swatch: Option<[u8; 3]>) -> Label {
        let width = |text: &str, scale: usize| {
            let swatch_w = if swatch.is_some() {
                font::CAP * scale + SWATCH_GAP
            } else {
                0
            };
            swatch_w + font::text_width(text) * scale
        };
        let (text, scale) = if width(text, 2) <= TILE {
            (text.to_owned(), 2)
        } else if width(text, 1) <= TILE {
            (text.to_owned(), 1)
        } else {
            let mut cut: String = text.chars().collect();
            while !cut.is_empty() && width(&format!("{cut}.."), 1) > TILE {
                cut.pop();
            }
            (format!("{cut}.."), 1)
        };
        Label {
            x: column_x + (TILE - width(&text, scale).min(TILE)) / 2,
            y: HEADER - 2 - font::HEIGHT * scale,
            text,
            swatch,
            scale,
        }
    }

    /// Side of the swatch in pixels: the height of a digit.
    fn swatch_side(&self) -> usize {
        font::CAP * self.scale
    }

    /// Left edge of the text.
    fn text_x(&self) -> usize {
        self.x + self.swatch.map_or(0, |_| self.swatch_side() + SWATCH_GAP)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "version: 1\nname: p\nclasses: [mito, er, a_very_long_class_name_indeed_1]\narrays:\n  inputs: {raw: {shape: [4, 8, 8], scale: [8, 8, 8]}}\n  targets: {labels: {shape: [4, 8, 8], scale: [8, 8, 8]}}\ndata:\n  datasets: [{split: train, raw: /d/a.zarr/raw, targets: '/d/a.zarr/crop1/{class}'}]\n";

    /// `text` at font scale `scale` with its top left at `(x, y)`: whether pixel `(px, py)` is ink.
    fn ink(text: &str, scale: usize, (x, y): (usize, usize), (px, py): (usize, usize)) -> bool {
        if px < x || py < y {
            return false;
        }
        let (dx, dy) = ((px - x) / scale, (py - y) / scale);
        let Some(c) = text.chars().nth(dx / font::ADVANCE) else {
            return false;
        };
        font::is_set(c, dy, dx % font::ADVANCE)
    }

    #[test]
    fn the_header_names_every_column_and_shows_each_class_colour() {
        let spec = cellmap_schema::parse(SPEC, Path::new("p.yaml")).unwrap().spec;
        let raw = vec![0.5f32; 2 * 256];
        let labels = vec![1.0f32; 2 * 3 * 256];
        let image = render(&spec, &[&raw, &labels], 2);
        assert_eq!(image.width, 5 * (TILE + GAP) + GAP);
        assert_eq!(
            image.height,
            HEADER + 2 * (TILE + GAP) + GAP,
            "the grid grows by the header"
        );
        let column = |k: usize| GAP + k * (TILE + GAP);

        // Every header pixel is background except the text, drawn exactly as its glyphs, and the
        // class swatches. "raw": 3 glyphs at scale 2 = 34 pixels, centred: (160 − 34) / 2 = 63.
        // "mito": a 14-pixel swatch, 4 pixels, 46 pixels of text: 64 centred at 48.
        let expected = |px: usize, py: usize| -> [u8; 3] {
            let y = HEADER - 2 - 18;
            if ink("raw", 2, (column(0) + 63, y), (px, py)) {
                return TEXT;
            }
            let swatch_x = column(1) + 48;
            if (swatch_x..swatch_x + 14).contains(&px) && (y..y + 14).contains(&py) {
                return COLOURS[0];
            }
            if ink("mito", 2, (swatch_x + 18, y), (px, py)) {
                return TEXT;
            }
            // "er": 14 + 4 + 22 = 40 pixels, at 60.
            if (column(2) + 60..column(2) + 74).contains(&px) && (y..y + 14).contains(&py) {
                return COLOURS[1];
            }
            if ink("er", 2, (column(2) + 78, y), (px, py)) {
                return TEXT;
            }
            // Too long for scale 2 or 1: cut to fit 160 pixels at scale 1 with a 7-pixel swatch.
            let (long, y1) = ("a_very_long_class_name_..", HEADER - 2 - 9);
            let long_x = column(3) + (TILE - (7 + 4 + font::text_width(long))) / 2;
            if (long_x..long_x + 7).contains(&px) && (y1..y1 + 7).contains(&py) {
                return COLOURS[2];
            }
            if ink(long, 1, (long_x + 11, y1), (px, py)) {
                return TEXT;
            }
            if ink("all", 2, (column(4) + 63, y), (px, py)) {
                return TEXT;
            }
            BACKGROUND
        };
        let mut text_pixels = 0;
        for py in 0..HEADER + GAP {
            for px in 0..image.width {
                let want = expected(px, py);
                assert_eq!(image.pixel(px, py), want, "header pixel ({px}, {py})");
                text_pixels += usize::from(want == TEXT);
            }
        }
        assert!(text_pixels > 200, "{text_pixels}");
        // The tiles start below the header: raw is uniform grey there, the class tiles coloured.
        assert_ne!(image.pixel(column(0), HEADER + GAP), BACKGROUND);
        assert_eq!(image.pixel(column(0), HEADER + GAP - 1), BACKGROUND);
    }

    #[test]
    fn labels_shrink_then_cut_to_fit_a_column() {
        let short = Label::fit(0, "nuc", None);
        assert_eq!((short.scale, short.text.as_str()), (2, "nuc"));
        let medium = Label::fit(0, "endoplasmic_reticulum", Some([1, 2, 3]));
        assert_eq!((medium.scale, medium.text.as_str()), (1, "endoplasmic_reticulum"));
        let long = Label::fit(0, &"x".repeat(40), Some([1, 2, 3]));
        assert_eq!(long.scale, 1);
        assert!(long.text.ends_with("..") && 7 + SWATCH_GAP + font::text_width(&long.text) <= TILE);
    }
}
