//! Pillow's antialiased resampling, to the bit: `Image.resize((w, h), BILINEAR)` as
//! Pillow 11's `libImaging/Resample.c` computes it for 8-bit images, written anew in
//! Rust from its description (no C, so that handlers compiled to WebAssembly get it too).
//!
//! What makes it Pillow's, and not merely a bilinear filter:
//!
//! - the coefficients of each output pixel are computed in `f64` over the source box
//!   `(0, size)` (held as `f32` by Pillow), with a support of `1.0 × max(scale, 1)` around
//!   the centre `(i + 0.5) × scale`, the first and last taps rounded as C's `(int)(x + 0.5)`
//!   does, and normalised to sum to 1;
//! - they become fixed point with 22 fractional bits, rounding half away from zero;
//! - each pass sums `pixel × coefficient` in integers from `1 << 21` and clips the result
//!   (`>> 22`) to 0..=255, so the intermediate image is 8-bit;
//! - the horizontal pass runs first, over only the source rows that the vertical pass
//!   reads; an axis whose size does not change is not resampled at all.
//!
//! Integer sums do not depend on their order, so the passes here are free to run in the
//! order that is fastest and to compute only a window of the output ([`resize_window`]):
//! the window's pixels are those of the whole resized image.

/// The fixed-point coefficients of one axis: for each output position, the first source
/// position it reads and its taps.
struct Axis {
    /// `(first source index, number of taps)` per output position.
    bounds: Vec<(usize, usize)>,
    /// `ksize` coefficients per output position (the unused ones zero).
    k: Vec<i32>,
    ksize: usize,
}

/// Pillow's `PRECISION_BITS`: 32 - 8 - 2.
const PRECISION_BITS: u32 = 22;

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// `precompute_coeffs` and `normalize_coeffs_8bpc` for the box `(0, in_size)` and the
/// bilinear filter.
fn axis(in_size: usize, out_size: usize) -> Axis {
    const SUPPORT: f64 = 1.0;
    // Pillow keeps the box in floats; `in1 - in0` is a float subtraction, then a double.
    let (in0, in1) = (0f32, in_size as f32);
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for (xx, kk) in k.chunks_exact_mut(ksize).enumerate() {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero; negative values are clamped to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, w) in w[..n].iter_mut().enumerate() {
            *w = bilinear(((x + xmin) as f64 - center + 0.5) * ss);
            ww += *w;
        }
        for (w, kk) in w[..n].iter().zip(kk.iter_mut()) {
            let v = if ww != 0.0 { w / ww } else { *w };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            *kk = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Axis { bounds, k, ksize }
}

#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `src` (`width` × `height`, `channels` interleaved bytes per pixel) resized to
/// `out_w` × `out_h` as Pillow's `resize(..., BILINEAR)` does, whole.
///
/// Panics if `src` is not `width * height * channels` bytes or a size is zero; callers
/// check first ([`crate::vision::Image::resize`] does).
pub fn resize(
    src: &[u8],
    (width, height, channels): (usize, usize, usize),
    (out_w, out_h): (usize, usize),
) -> Vec<u8> {
    resize_window(
        src,
        (width, height, channels),
        (out_w, out_h),
        (0, 0, out_w, out_h),
    )
}

/// The window `(left, top, w, h)` of `src` resized to `out_w` × `out_h` (Pillow's
/// pixels, computed for the window alone): `resize` then `crop` in one, for the price of
/// the window.
///
/// Panics if `src` is not `width * height * channels` bytes, a size is zero or the window
/// is not inside the output.
pub fn resize_window(
    src: &[u8],
    (width, height, c): (usize, usize, usize),
    (out_w, out_h): (usize, usize),
    (left, top, win_w, win_h): (usize, usize, usize, usize),
) -> Vec<u8> {
    assert_eq!(src.len(), width * height * c, "resize: the image's size");
    assert!(width > 0 && height > 0 && out_w > 0 && out_h > 0);
    assert!(left + win_w <= out_w && top + win_h <= out_h && win_w > 0 && win_h > 0);
    let need_h = out_w != width;
    let need_v = out_h != height;

    // The rows the vertical pass reads (all of the window's rows when there is none).
    let vert = need_v.then(|| axis(height, out_h));
    let (row0, row1) = match &vert {
        Some(a) => {
            let first = a.bounds[top].0;
            let (s, n) = a.bounds[top + win_h - 1];
            (first, (s + n).max(first))
        }
        None => (top, top + win_h),
    };

    // Horizontal pass over those rows, for the window's columns: an 8-bit image of
    // `win_w` columns and `row1 - row0` rows (or the source's columns, cut, when the
    // width does not change).
    let tmp: Vec<u8> = if need_h {
        let a = axis(width, out_w);
        let mut tmp = vec![0u8; (row1 - row0) * win_w * c];
        let stride = width * c;
        for (y, out_row) in (row0..row1).zip(tmp.chunks_exact_mut(win_w * c)) {
            let row = &src[y * stride..(y + 1) * stride];
            let bounds = &a.bounds[left..left + win_w];
            let ks = a.k[left * a.ksize..(left + win_w) * a.ksize].chunks_exact(a.ksize);
            match c {
                3 => {
                    for ((&(xmin, n), k), out) in
                        bounds.iter().zip(ks).zip(out_row.chunks_exact_mut(3))
                    {
                        let (mut s0, mut s1, mut s2) = (1 << 21, 1 << 21, 1 << 21);
                        let taps = &row[xmin * 3..(xmin + n) * 3];
                        for (px, &k) in taps.chunks_exact(3).zip(k) {
                            s0 += px[0] as i32 * k;
                            s1 += px[1] as i32 * k;
                            s2 += px[2] as i32 * k;
                        }
                        out[0] = clip8(s0);
                        out[1] = clip8(s1);
                        out[2] = clip8(s2);
                    }
                }
                _ => {
                    for ((&(xmin, n), k), out) in
                        bounds.iter().zip(ks).zip(out_row.chunks_exact_mut(c))
                    {
                        for (ch, out) in out.iter_mut().enumerate() {
                            let mut s = 1 << 21;
                            for (x, &k) in k[..n].iter().enumerate() {
                                s += row[(xmin + x) * c + ch] as i32 * k;
                            }
                            *out = clip8(s);
                        }
                    }
                }
            }
        }
        tmp
    } else {
        let stride = width * c;
        let mut tmp = Vec::with_capacity((row1 - row0) * win_w * c);
        for y in row0..row1 {
            tmp.extend_from_slice(&src[y * stride + left * c..y * stride + (left + win_w) * c]);
        }
        tmp
    };

    // Vertical pass: each output row sums its taps' rows, tap by tap over the whole row
    // (the same integers as Pillow's pixel-by-pixel loop, in an order that vectorises).
    let Some(a) = vert else { return tmp };
    let stride = win_w * c;
    let mut out = vec![0u8; win_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, out_row) in (top..top + win_h).zip(out.chunks_exact_mut(stride)) {
        let (ymin, n) = a.bounds[yy];
        let k = &a.k[yy * a.ksize..yy * a.ksize + n];
        acc.fill(1 << 21);
        for (y, &k) in k.iter().enumerate() {
            let r = ymin + y - row0;
            let row = &tmp[r * stride..(r + 1) * stride];
            for (acc, &p) in acc.iter_mut().zip(row) {
                *acc += p as i32 * k;
            }
        }
        for (o, &s) in out_row.iter_mut().zip(&acc) {
            *o = clip8(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pillow's loops as written: every output pixel of the whole image, horizontal pass
    /// over the rows the vertical pass needs, then vertical, pixel by pixel.
    fn literal(src: &[u8], (w, h, c): (usize, usize, usize), (ow, oh): (usize, usize)) -> Vec<u8> {
        let (ax, ay) = (axis(w, ow), axis(h, oh));
        let (y0, y1) = if oh != h {
            (ay.bounds[0].0, ay.bounds[oh - 1].0 + ay.bounds[oh - 1].1)
        } else {
            (0, h)
        };
        let tmp: Vec<u8> = if ow != w {
            let mut t = vec![0u8; (y1 - y0) * ow * c];
            for yy in 0..y1 - y0 {
                for xx in 0..ow {
                    let (xmin, n) = ax.bounds[xx];
                    for ch in 0..c {
                        let mut s = 1i32 << 21;
                        for x in 0..n {
                            s += src[((yy + y0) * w + x + xmin) * c + ch] as i32
                                * ax.k[xx * ax.ksize + x];
                        }
                        t[(yy * ow + xx) * c + ch] = clip8(s);
                    }
                }
            }
            t
        } else {
            src[y0 * w * c..y1 * w * c].to_vec()
        };
        if oh == h {
            return tmp;
        }
        let mut out = vec![0u8; oh * ow * c];
        for yy in 0..oh {
            let (ymin, n) = ay.bounds[yy];
            for x in 0..ow * c {
                let mut s = 1i32 << 21;
                for y in 0..n {
                    s += tmp[(ymin - y0 + y) * ow * c + x] as i32 * ay.k[yy * ay.ksize + y];
                }
                out[yy * ow * c + x] = clip8(s);
            }
        }
        out
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(720, 256), (256, 720), (5, 3), (1000, 1), (7, 7), (3, 1000)] {
            let a = axis(i, o);
            for (x, &(s, n)) in a.bounds.iter().enumerate() {
                assert!(s + n <= i && n > 0, "{i}->{o} at {x}");
                let sum: i64 = a.k[x * a.ksize..x * a.ksize + n]
                    .iter()
                    .map(|&k| k as i64)
                    .sum();
                assert!(
                    (sum - (1 << 22)).abs() <= n as i64,
                    "{i}->{o} at {x}: {sum}"
                );
            }
        }
    }

    #[test]
    fn the_window_is_the_whole_images_crop_and_the_passes_are_pillows() {
        for (w, h, c, ow, oh) in [
            (37, 23, 3, 16, 11),
            (23, 37, 1, 50, 80),
            (9, 9, 3, 9, 4),
            (9, 9, 3, 4, 9),
            (640, 480, 3, 341, 256),
        ] {
            let src: Vec<u8> = (0..w * h * c).map(|i| (i * 7919 % 256) as u8).collect();
            let whole = resize(&src, (w, h, c), (ow, oh));
            assert_eq!(
                whole,
                literal(&src, (w, h, c), (ow, oh)),
                "{w}x{h} -> {ow}x{oh}"
            );
            let (l, t, ww, wh) = (ow / 3, oh / 4, ow - ow / 3 - 1, oh / 2 + 1);
            let win = resize_window(&src, (w, h, c), (ow, oh), (l, t, ww, wh));
            for y in 0..wh {
                let a = &whole[((t + y) * ow + l) * c..((t + y) * ow + l + ww) * c];
                assert_eq!(&win[y * ww * c..(y + 1) * ww * c], a, "row {y}");
            }
        }
    }
}
