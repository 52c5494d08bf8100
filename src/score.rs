//! Checkerboard score (docs/MATHS.md): how visible the r-periodic pattern of an upscaled image is.
//!
//! For Y in [0, 1] and phases `(i, j)` in `[0, r)^2`: `m[c,i,j]` = mean of `Y[c, i::r, j::r]`, `mbar[c]` = mean of
//! `m[c,·,·]`, score = `sqrt(mean_{c,i,j} (m - mbar)^2) / (mean_c std(Y[c]) + 1e-12)`, over R, G, B (alpha
//! excluded), std the population std (numpy `Y[c].std()`, ddof = 0).
//!
//! Sums are exact integers, so the score depends neither on the order rows arrive in nor on rounding, and an image
//! whose every r x r block is uniform scores exactly 0.

use crate::engine::{Image, OutRows, RowSamples, Samples};

/// Largest scale the accumulator has phase slots for.
const MAX_R: usize = crate::kernel::MAX_SCALE as usize;

/// Accumulates exact integer sums per (channel, phase) and per channel, so a uniform-block image scores exactly 0.
#[derive(Debug, Clone)]
pub struct ScoreAccumulator {
    scale: u32,
    /// Sum of samples per (channel, i, j).
    phase_sum: [[[u64; MAX_R]; MAX_R]; 3],
    /// Pixels per (i, j).
    phase_n: [[u64; MAX_R]; MAX_R],
    /// Per channel: sum and sum of squares.
    sum: [u128; 3],
    sum_sq: [u128; 3],
    /// 255 or 65535, from the first rows pushed.
    max: Option<f64>,
}

impl ScoreAccumulator {
    /// `scale` is clamped to `1..=8`.
    pub fn new(scale: u32) -> Self {
        ScoreAccumulator {
            scale: scale.clamp(1, MAX_R as u32),
            phase_sum: [[[0; MAX_R]; MAX_R]; 3],
            phase_n: [[0; MAX_R]; MAX_R],
            sum: [0; 3],
            sum_sq: [0; 3],
            max: None,
        }
    }

    /// Feed rows in any order; alpha (4th channel) is ignored.
    pub fn push(&mut self, rows: &OutRows<'_>) {
        match rows.samples {
            RowSamples::U8(s) => {
                self.max.get_or_insert(255.0);
                self.push_samples(rows, s);
            }
            RowSamples::U16(s) => {
                self.max.get_or_insert(65535.0);
                self.push_samples(rows, s);
            }
        }
    }

    fn push_samples<T: Copy + Into<u64>>(&mut self, rows: &OutRows<'_>, s: &[T]) {
        let r = self.scale as usize;
        let nc = rows.channels as usize;
        let width = rows.width as usize;
        if nc < 3 || width == 0 {
            return;
        }
        // Samples of one group of r pixels: lane `q = j*nc + c` holds phase j, channel c.
        let lanes = r * nc;
        let (groups, extra) = ((width / r) as u64, width % r);
        for (t, row) in s.chunks_exact(width * nc).take(rows.rows as usize).enumerate() {
            let i = (rows.first_row as usize + t) % r;
            // Row-local u64 sums (a row holds at most 2^32 pixels of at most 16 bits, so nothing overflows), folded
            // into the totals once per row: the hot loop has no per-sample phase arithmetic and no u128 adds.
            let mut lane_sum = [0u64; MAX_R * 4];
            let mut lane_sq = [0u64; MAX_R * 4];
            match lanes {
                6 => sum_lanes::<6, T>(row, &mut lane_sum, &mut lane_sq),
                8 => sum_lanes::<8, T>(row, &mut lane_sum, &mut lane_sq),
                9 => sum_lanes::<9, T>(row, &mut lane_sum, &mut lane_sq),
                12 => sum_lanes::<12, T>(row, &mut lane_sum, &mut lane_sq),
                16 => sum_lanes::<16, T>(row, &mut lane_sum, &mut lane_sq),
                _ => sum_lanes_dyn(row, lanes, &mut lane_sum, &mut lane_sq),
            }
            for j in 0..r {
                self.phase_n[i][j] += groups + u64::from(j < extra);
                for c in 0..3 {
                    let q = j * nc + c;
                    self.phase_sum[c][i][j] += lane_sum[q];
                    self.sum[c] += u128::from(lane_sum[q]);
                    self.sum_sq[c] += u128::from(lane_sq[q]);
                }
            }
        }
    }

    /// The score; 0 for an empty image.
    pub fn finish(&self) -> f64 {
        let r = self.scale as usize;
        let Some(max) = self.max else { return 0.0 };
        let n: u64 = self.phase_n.iter().flat_map(|row| &row[..r]).sum();
        if n == 0 {
            return 0.0;
        }
        let phases: Vec<(usize, usize)> =
            (0..r).flat_map(|i| (0..r).map(move |j| (i, j))).filter(|&(i, j)| self.phase_n[i][j] > 0).collect();
        let mut dev_sq = 0.0f64;
        for c in 0..3 {
            let m: Vec<f64> =
                phases.iter().map(|&(i, j)| self.phase_sum[c][i][j] as f64 / self.phase_n[i][j] as f64 / max).collect();
            // mbar as m[0] + mean(m - m[0]): exactly m[0] when every phase mean is equal, so the score is exactly 0.
            let mbar = m[0] + m.iter().map(|&x| x - m[0]).sum::<f64>() / m.len() as f64;
            dev_sq += m.iter().map(|&x| (x - mbar) * (x - mbar)).sum::<f64>();
        }
        let rms = (dev_sq / (3 * phases.len()) as f64).sqrt();
        // Population variance, exactly: (n * sum_sq - sum^2) / n^2.
        let mean_std = (0..3)
            .map(|c| {
                let num = (n as u128 * self.sum_sq[c]).saturating_sub(self.sum[c] * self.sum[c]);
                (num as f64).sqrt() / n as f64 / max
            })
            .sum::<f64>()
            / 3.0;
        rms / (mean_std + 1e-12)
    }
}

/// Adds each sample of `row` into lane `index % L` (sum and sum of squares); `L` fixed so the loop vectorises.
fn sum_lanes<const L: usize, T: Copy + Into<u64>>(row: &[T], sum: &mut [u64], sq: &mut [u64]) {
    let mut acc = [0u64; L];
    let mut acc_sq = [0u64; L];
    let chunks = row.chunks_exact(L);
    let rem = chunks.remainder();
    for chunk in chunks {
        for q in 0..L {
            let v: u64 = chunk[q].into();
            acc[q] += v;
            acc_sq[q] += v * v;
        }
    }
    for (q, &v) in rem.iter().enumerate() {
        let v: u64 = v.into();
        acc[q] += v;
        acc_sq[q] += v * v;
    }
    for q in 0..L {
        sum[q] += acc[q];
        sq[q] += acc_sq[q];
    }
}

/// [`sum_lanes`] for a lane count known only at run time.
fn sum_lanes_dyn<T: Copy + Into<u64>>(row: &[T], lanes: usize, sum: &mut [u64], sq: &mut [u64]) {
    for chunk in row.chunks(lanes) {
        for (q, &v) in chunk.iter().enumerate() {
            let v: u64 = v.into();
            sum[q] += v;
            sq[q] += v * v;
        }
    }
}

/// Score of a whole image (3 or 4 channels) upscaled by `scale`.
pub fn checkerboard_score(img: &Image, scale: u32) -> f64 {
    let mut acc = ScoreAccumulator::new(scale);
    let samples = match &img.samples {
        Samples::U8(s) => RowSamples::U8(s),
        Samples::U16(s) => RowSamples::U16(s),
    };
    acc.push(&OutRows { first_row: 0, rows: img.height, width: img.width, channels: img.channels, samples });
    acc.finish()
}
