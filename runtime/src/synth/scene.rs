//! The synthetic scene: a cell with a plasma membrane, two nuclei, mitochondria and ER sheets,
//! drawn from a seed; every voxel gets the code of the material at its centre.

/// SplitMix64: tiny, seedable, good enough for placing structures and noise.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// Voxel codes of the scene.
pub(super) const EXTRA: u8 = 0;
pub(super) const CYTO: u8 = 1;
pub(super) const PM: u8 = 2;
pub(super) const NUC1: u8 = 3;
pub(super) const NUC2: u8 = 4;
pub(super) const MITO: u8 = 5;
pub(super) const ER: u8 = 6;

pub(super) struct Scene {
    centre: [f64; 3],
    radius: f64,
    nuclei: [([f64; 3], f64); 2],
    mitos: Vec<([f64; 3], [f64; 3])>,
    er_phase: [f64; 2],
    er_period: f64,
    er_amp: f64,
}

pub(super) fn make_scene(n: u64, seed: u64) -> Scene {
    let n = n as f64;
    let mut rng = SplitMix(seed ^ 0x5EED_CE11);
    let centre = [
        n / 2.0 + rng.uniform(-0.03, 0.03) * n,
        n / 2.0 + rng.uniform(-0.03, 0.03) * n,
        n / 2.0 + rng.uniform(-0.03, 0.03) * n,
    ];
    let radius = 0.45 * n;
    let nuc1 = (
        [
            centre[0] - 0.12 * n,
            centre[1] + rng.uniform(-0.04, 0.04) * n,
            centre[2] + rng.uniform(-0.04, 0.04) * n,
        ],
        0.16 * n,
    );
    let nuc2 = (
        [
            centre[0] + 0.17 * n,
            centre[1] + 0.1 * n,
            centre[2] - 0.08 * n + rng.uniform(-0.02, 0.02) * n,
        ],
        0.1 * n,
    );
    let count = if n > 128.0 { 40 } else { 14 };
    let mut mitos = Vec::with_capacity(count);
    let mut tries = 0;
    while mitos.len() < count && tries < 10_000 {
        tries += 1;
        let p = [
            centre[0] + rng.uniform(-0.75, 0.75) * radius,
            centre[1] + rng.uniform(-0.75, 0.75) * radius,
            centre[2] + rng.uniform(-0.75, 0.75) * radius,
        ];
        let long = rng.uniform(0.06, 0.09) * n;
        let short = 0.03 * n;
        let axis = (rng.next_u64() % 3) as usize;
        let mut semi = [short; 3];
        semi[axis] = long;
        let clear = |c: [f64; 3], r: f64| dist(p, c) > r + long + 1.0;
        if dist(p, centre) + long < radius - 2.0 && clear(nuc1.0, nuc1.1) && clear(nuc2.0, nuc2.1) {
            mitos.push((p, semi));
        }
    }
    Scene {
        centre,
        radius,
        nuclei: [nuc1, nuc2],
        mitos,
        er_phase: [rng.uniform(0.0, 6.3), rng.uniform(0.0, 6.3)],
        er_period: 0.11 * n,
        er_amp: 0.05 * n,
    }
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

impl Scene {
    /// The structure code at s0 voxel `p` (voxel units of the raw grid).
    pub(super) fn code(&self, p: [f64; 3]) -> u8 {
        let r = dist(p, self.centre);
        if (r - self.radius).abs() < 1.0 {
            return PM;
        }
        if r > self.radius {
            return EXTRA;
        }
        for (k, (c, rad)) in self.nuclei.iter().enumerate() {
            if dist(p, *c) < *rad {
                return if k == 0 { NUC1 } else { NUC2 };
            }
        }
        for (c, semi) in &self.mitos {
            let d: f64 = (0..3).map(|a| ((p[a] - c[a]) / semi[a]).powi(2)).sum();
            if d <= 1.0 {
                return MITO;
            }
        }
        if r < self.radius - 3.0 {
            let tau = std::f64::consts::TAU;
            let g = p[2]
                + self.er_amp * (tau * p[0] / (2.3 * self.er_period) + self.er_phase[0]).sin()
                + self.er_amp * (tau * p[1] / (1.7 * self.er_period) + self.er_phase[1]).sin();
            if g.rem_euclid(self.er_period) < 1.5 {
                return ER;
            }
        }
        CYTO
    }
}
