/*
 * The JPEG decoder's C side: libjpeg-turbo's (through mozjpeg-sys, built from source)
 * decompression as Pillow sets it up, behind one function that never unwinds into Rust.
 *
 * libjpeg reports fatal errors through `error_exit`, which must not return; the usual
 * way out, taken here, is a longjmp back to the setjmp in ws_jpeg_decode, which then
 * destroys the decompressor and returns the message. Nothing of Rust's is on the stack
 * between the two (the allocation callback returns before libjpeg is entered again).
 *
 * Untrusted input is bounded before any pixel is decoded: the sides and the pixel count
 * are checked after the header, the memory libjpeg may take is capped, and a progress
 * monitor refuses progressive files with more scans than any real encoder writes (the
 * known way to make a small file cost minutes of CPU). A file that ends early is refused
 * (Pillow refuses one too, "image file is truncated"); other warnings are ignored, as
 * Pillow ignores them.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "jpeglib.h"
#include "jerror.h"

/* What the caller asks for. */
typedef struct {
    /* 1: grey, 3: RGB, 4: CMYK as stored (for the caller to convert). 0: 1 or 3 as the
       file has it (4 for CMYK/YCCK files). */
    int channels;
    /* DCT-domain scaling, by the steps libjpeg-turbo's SIMD IDCTs have (1/2, 1/4, 1/8;
       the other M/8 run a scalar IDCT slower than the full-size SIMD one): by 1/2 when
       the shorter side, halved, is still at least min_half (0: no scaling); further,
       by 1/4 and then 1/8, while it is still at least min_quarter. */
    uint32_t min_half;
    uint32_t min_quarter;
    /* 0: libjpeg's defaults (JDCT_ISLOW, fancy upsampling), Pillow's. 1: JDCT_IFAST and
       merged upsampling, for the fast mode. */
    int fast;
    uint32_t max_side;
    uint64_t max_pixels;
    uint64_t max_memory;
    int max_scans;
} ws_jpeg_params;

/* What comes back. */
typedef struct {
    uint32_t width;          /* of the decoded image (after scaling) */
    uint32_t height;
    uint32_t channels;       /* of the decoded image: 1, 3 or 4 */
    uint32_t src_width;      /* of the file */
    uint32_t src_height;
    char message[JMSG_LENGTH_MAX + 96];
} ws_jpeg_result;

/* Returns a buffer of `len` bytes for the pixels, or NULL to refuse. */
typedef uint8_t *(*ws_alloc_fn)(void *ctx, size_t len);

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
} ws_error_mgr;

typedef struct {
    struct jpeg_progress_mgr pub;
    int max_scans;
    int too_many;
} ws_progress_mgr;

static void ws_error_exit(j_common_ptr cinfo) {
    ws_error_mgr *err = (ws_error_mgr *)cinfo->err;
    longjmp(err->jump, 1);
}

static void ws_emit_message(j_common_ptr cinfo, int level) {
    ws_error_mgr *err = (ws_error_mgr *)cinfo->err;
    if (level < 0) {
        err->pub.num_warnings++;
        if (err->pub.msg_code == JWRN_JPEG_EOF) {
            err->truncated = 1;
            longjmp(err->jump, 1);
        }
    }
}

static void ws_progress(j_common_ptr cinfo) {
    ws_progress_mgr *p = (ws_progress_mgr *)cinfo->progress;
    if (cinfo->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)cinfo;
        if (d->input_scan_number > p->max_scans) {
            p->too_many = 1;
            longjmp(((ws_error_mgr *)cinfo->err)->jump, 1);
        }
    }
}

/* Returns 0 and fills `res` on success; otherwise a non-zero code with res->message:
   1 not decodable, 2 over a limit, 3 refused by the allocator. */
int ws_jpeg_decode(const uint8_t *data, size_t len, const ws_jpeg_params *params,
                   ws_alloc_fn alloc, void *ctx, ws_jpeg_result *res) {
    struct jpeg_decompress_struct cinfo;
    ws_error_mgr err;
    ws_progress_mgr progress;
    /* volatile: read after a longjmp */
    volatile int created = 0;
    volatile int code = 1;
    uint8_t *pixels = NULL;

    memset(res, 0, sizeof(*res));
    memset(&cinfo, 0, sizeof(cinfo));
    memset(&progress, 0, sizeof(progress));
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = ws_error_exit;
    err.pub.emit_message = ws_emit_message;
    err.truncated = 0;
    progress.pub.progress_monitor = ws_progress;
    progress.max_scans = params->max_scans;
    progress.too_many = 0;

    if (setjmp(err.jump)) {
        if (progress.too_many) {
            snprintf(res->message, sizeof(res->message),
                     "the progressive JPEG has over %d scans", params->max_scans);
            code = 2;
        } else if (err.truncated) {
            snprintf(res->message, sizeof(res->message), "the JPEG file is truncated");
        } else {
            char msg[JMSG_LENGTH_MAX];
            err.pub.format_message((j_common_ptr)&cinfo, msg);
            snprintf(res->message, sizeof(res->message), "%s", msg);
        }
        if (created) {
            jpeg_destroy_decompress(&cinfo);
        }
        return code;
    }

    jpeg_create_decompress(&cinfo);
    created = 1;
    cinfo.progress = &progress.pub;
    cinfo.mem->max_memory_to_use = (long)params->max_memory;
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);

    res->src_width = cinfo.image_width;
    res->src_height = cinfo.image_height;
    if (cinfo.image_width > params->max_side || cinfo.image_height > params->max_side ||
        (uint64_t)cinfo.image_width * cinfo.image_height > params->max_pixels) {
        snprintf(res->message, sizeof(res->message),
                 "the image is %ux%u, over the size limit", cinfo.image_width,
                 cinfo.image_height);
        jpeg_destroy_decompress(&cinfo);
        return 2;
    }

    int want = params->channels;
    int cmyk = cinfo.num_components == 4 &&
               (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK);
    if (cmyk) {
        cinfo.out_color_space = JCS_CMYK;
    } else if (want == 1 && cinfo.jpeg_color_space == JCS_GRAYSCALE) {
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else if (want == 0 && cinfo.jpeg_color_space == JCS_GRAYSCALE) {
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else {
        /* RGB; a grey file's value replicated (what Pillow's convert("RGB") does). */
        cinfo.out_color_space = JCS_RGB;
    }
    if (params->min_half > 0) {
        uint64_t shorter = cinfo.image_width < cinfo.image_height ? cinfo.image_width
                                                                  : cinfo.image_height;
        /* libjpeg's scaled side is ceil(side / denom). */
        unsigned int denom = 1;
        if ((shorter + 1) / 2 >= params->min_half) {
            denom = 2;
            while (denom < 8 && (shorter + 2 * denom - 1) / (2 * denom) >= params->min_quarter) {
                denom *= 2;
            }
        }
        cinfo.scale_num = 1;
        cinfo.scale_denom = denom;
    }
    if (params->fast) {
        cinfo.dct_method = JDCT_IFAST;
        cinfo.do_fancy_upsampling = FALSE;
    }

    jpeg_start_decompress(&cinfo);
    size_t row = (size_t)cinfo.output_width * cinfo.output_components;
    size_t total = row * cinfo.output_height;
    res->width = cinfo.output_width;
    res->height = cinfo.output_height;
    res->channels = (uint32_t)cinfo.output_components;
    pixels = alloc(ctx, total);
    if (!pixels) {
        snprintf(res->message, sizeof(res->message), "no memory for the %ux%u image",
                 cinfo.output_width, cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        return 3;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[4];
        int n = 0;
        for (; n < 4 && cinfo.output_scanline + n < cinfo.output_height; n++) {
            rows[n] = pixels + (size_t)(cinfo.output_scanline + n) * row;
        }
        jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)n);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
