//! JPEG decoding as Pillow does it: libjpeg-turbo's decompressor (vendored by
//! `mozjpeg-sys`, built from source with its SIMD when `nasm` is there) with libjpeg's
//! defaults, which are Pillow's: the accurate integer IDCT (`JDCT_ISLOW`), fancy
//! upsampling, no scaling. The C side (`host/cpp/jpeg.c`) holds the setjmp that
//! libjpeg's errors return to, and the limits on untrusted files; this side owns the
//! pixel buffer and turns the outcome into a `Result`.

use std::ffi::{CStr, c_char, c_int, c_void};

// The vendored libjpeg-turbo that host/cpp/jpeg.c calls into: linked through this crate.
use mozjpeg_sys as _;
use wasmserve_handler::vision::{MAX_PIXELS, MAX_SIDE};

/// More scans than any encoder writes (libjpeg's own progressive scripts use 10 or so;
/// mozjpeg's optimised ones under 100); past this a file is refused rather than decoded
/// scan after scan.
pub const MAX_SCANS: i32 = 500;
/// What libjpeg may allocate for one image: the largest progressive file (40 megapixels
/// of 4:4:4 coefficients, 240 MB) and its output fit.
pub const MAX_MEMORY: u64 = 768 << 20;

#[repr(C)]
struct Params {
    channels: c_int,
    min_half: u32,
    min_quarter: u32,
    fast: c_int,
    max_side: u32,
    max_pixels: u64,
    max_memory: u64,
    max_scans: c_int,
}

#[repr(C)]
struct Outcome {
    width: u32,
    height: u32,
    channels: u32,
    src_width: u32,
    src_height: u32,
    // JMSG_LENGTH_MAX (200) + 96
    message: [c_char; 296],
}

type AllocFn = unsafe extern "C" fn(ctx: *mut c_void, len: usize) -> *mut u8;

unsafe extern "C" {
    fn ws_jpeg_decode(
        data: *const u8,
        len: usize,
        params: *const Params,
        alloc: AllocFn,
        ctx: *mut c_void,
        res: *mut Outcome,
    ) -> c_int;
}

/// The output buffer, sized by the C side once it knows the image's size. Never
/// unwinds: the size is bounded by the limits checked before it is called.
unsafe extern "C" fn alloc(ctx: *mut c_void, len: usize) -> *mut u8 {
    // SAFETY: `ctx` is the `&mut Vec<u8>` that `decode` passes, alive for the call.
    let buf = unsafe { &mut *(ctx as *mut Vec<u8>) };
    if len as u64 > MAX_PIXELS * 4 || buf.try_reserve_exact(len).is_err() {
        return std::ptr::null_mut();
    }
    buf.resize(len, 0);
    buf.as_mut_ptr()
}

/// How to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// 1 (grey), 3 (RGB), or 0 (as the file has it: 1 or 3). A CMYK file comes back as
    /// 4 channels of CMYK, as libjpeg gives it, whatever is asked.
    pub channels: u32,
    /// DCT-domain scaling (0: none), in the steps of Pillow's `draft`, which are those
    /// libjpeg-turbo's SIMD IDCTs have (any other `M / 8` runs a scalar IDCT, slower
    /// than decoding at full size): by 1/2 when the shorter side, halved, is still at
    /// least this.
    pub min_half: u32,
    /// Further, by 1/4 and then 1/8, while the shorter side is still at least this.
    pub min_quarter: u32,
    /// The fast IDCT (`JDCT_IFAST`) and plain upsampling: other pixels than Pillow's.
    pub fast: bool,
}

impl Settings {
    /// Pillow's decode: full size, libjpeg's defaults.
    pub fn exact(channels: u32) -> Settings {
        Settings {
            channels,
            min_half: 0,
            min_quarter: 0,
            fast: false,
        }
    }
}

/// A decoded JPEG.
#[derive(Debug)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    /// 1, 3 or 4 (CMYK, Adobe's inverted convention undone by the caller).
    pub channels: u32,
    /// The file's own size, before any scaling.
    pub source_size: (u32, u32),
    pub pixels: Vec<u8>,
}

/// Whether `bytes` starts like a JPEG file (SOI then a marker).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
}

/// Decodes `bytes`, within [`MAX_SIDE`], [`MAX_PIXELS`], [`MAX_MEMORY`] and
/// [`MAX_SCANS`]. The error says why, for a 400.
pub fn decode(bytes: &[u8], settings: Settings) -> Result<Decoded, String> {
    let params = Params {
        channels: settings.channels as c_int,
        min_half: settings.min_half,
        min_quarter: settings.min_quarter,
        fast: settings.fast as c_int,
        max_side: MAX_SIDE,
        max_pixels: MAX_PIXELS,
        max_memory: MAX_MEMORY,
        max_scans: MAX_SCANS,
    };
    let mut out = Outcome {
        width: 0,
        height: 0,
        channels: 0,
        src_width: 0,
        src_height: 0,
        message: [0; 296],
    };
    let mut pixels: Vec<u8> = Vec::new();
    // SAFETY: the pointers are valid for the call; `alloc` gets `&mut pixels` back as
    // its context and the C side writes at most the `len` bytes it asked for.
    let code = unsafe {
        ws_jpeg_decode(
            bytes.as_ptr(),
            bytes.len(),
            &params,
            alloc,
            &mut pixels as *mut Vec<u8> as *mut c_void,
            &mut out,
        )
    };
    if code != 0 {
        // SAFETY: the C side always NUL-terminates the message (snprintf, or zeroes).
        let msg = unsafe { CStr::from_ptr(out.message.as_ptr()) }.to_string_lossy();
        return Err(format!("cannot decode the JPEG image: {msg}"));
    }
    let expected = out.width as usize * out.height as usize * out.channels as usize;
    if pixels.len() != expected || !matches!(out.channels, 1 | 3 | 4) {
        return Err("cannot decode the JPEG image: the decoder's output is inconsistent".into());
    }
    Ok(Decoded {
        width: out.width,
        height: out.height,
        channels: out.channels,
        source_size: (out.src_width, out.src_height),
        pixels,
    })
}
