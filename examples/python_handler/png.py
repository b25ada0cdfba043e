"""A small pure-Python PNG decoder (zlib from the standard library, nothing else).

Enough for handwritten digits and other small images: bit depths 1-16, every colour type
(grey, RGB, palette, grey + alpha, RGBA), the five row filters (None, Sub, Up, Average,
Paeth), no interlacing. `decode_grey` gives 8-bit luma, row-major, the way the Rust SDK's
`decode_luma` does (Rec. 709 weights for colour images, alpha ignored).
"""

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Samples per pixel for each colour type.
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


class PngError(ValueError):
    """The bytes are not a PNG this decoder can read."""


def _chunks(data):
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise PngError("truncated PNG chunk")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length
    raise PngError("PNG without IEND")


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw, height, stride, bpp):
    """Undoes the per-row filters; returns the image bytes without filter bytes."""
    if len(raw) < height * (stride + 1):
        raise PngError("PNG image data too short")
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        row = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 0:
            pass
        elif kind == 1:  # Sub
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            for i in range(stride):
                row[i] = (row[i] + prev[i]) & 0xFF
        elif kind == 3:  # Average
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + _paeth(left, prev[i], upleft)) & 0xFF
        else:
            raise PngError(f"unknown PNG filter type {kind}")
        out[y * stride : (y + 1) * stride] = row
        prev = row
    return out


def _samples(rows, width, height, depth, channels):
    """The image's samples as 8-bit values (16-bit: high byte; below 8: scaled up)."""
    if depth == 8:
        return rows
    if depth == 16:
        return rows[0::2]
    stride = (width * channels * depth + 7) // 8
    mask = (1 << depth) - 1
    scale = 255 // mask
    out = bytearray()
    per_row = width * channels
    for y in range(height):
        row = rows[y * stride : (y + 1) * stride]
        n = 0
        for byte in row:
            for shift in range(8 - depth, -1, -depth):
                if n == per_row:
                    break
                out.append(((byte >> shift) & mask) * scale)
                n += 1
    return out


def decode(data):
    """Decodes a PNG into (width, height, channels, 8-bit samples, palette or None)."""
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG image")
    header = None
    palette = None
    idat = []
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat.append(body)
    if header is None:
        raise PngError("PNG without IHDR")
    width, height, depth, colour, _compression, _filter, interlace = header
    if colour not in _CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise PngError(f"unsupported PNG colour type {colour} / bit depth {depth}")
    if interlace:
        raise PngError("interlaced PNGs are not supported")
    if width == 0 or height == 0 or width * height > 1 << 24:
        raise PngError(f"unsupported PNG size {width}x{height}")
    channels = _CHANNELS[colour]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise PngError(f"corrupt PNG image data: {e}") from None
    bits = channels * depth
    stride = (width * bits + 7) // 8
    rows = _unfilter(raw, height, stride, max(1, bits // 8))
    samples = _samples(rows, width, height, depth, channels)
    if colour == 3:
        if palette is None:
            raise PngError("palette PNG without PLTE")
        # Palette indices were scaled up by _samples for depths below 8: undo that.
        scale = 255 // ((1 << depth) - 1) if depth < 8 else 1
        rgb = bytearray()
        for index in samples:
            i = 3 * (index // scale)
            rgb += palette[i : i + 3] if i + 3 <= len(palette) else b"\0\0\0"
        return width, height, 3, rgb, palette
    return width, height, channels, samples, palette


def decode_grey(data):
    """Decodes a PNG to 8-bit grey: (width, height, bytearray of width * height)."""
    width, height, channels, samples, _ = decode(data)
    if channels == 1:
        return width, height, bytearray(samples)
    if channels == 2:
        return width, height, bytearray(samples[0::2])
    r, g, b = samples[0::channels], samples[1::channels], samples[2::channels]
    grey = bytearray(
        min(255, (2126 * r[i] + 7152 * g[i] + 722 * b[i] + 5000) // 10000)
        for i in range(width * height)
    )
    return width, height, grey
