"""An MNIST digit classifier handler in plain Python, for models such as vit4mnist.ptl.

Input: a PNG of a handwritten digit (grey or colour; resized to 28x28 if it is another
size). Preprocess: pixels (x / 255 - 0.1307) / 0.3081 as a float32 [1, 1, 28, 28] tensor.
Postprocess: the digit with the highest score, as a JSON number — the same answers as the
Rust example in examples/mnist_handler.

Build: scripts/build-python-handler.sh (componentize-py). The component's exports come
from `WitWorld` at the bottom.
"""

from png import PngError, decode_grey
from wasmserve_handler import BaseHandler, HandlerError, export, input_bytes, log, tensor, values

SIDE = 28
MEAN = 0.1307
STD = 0.3081


def resize(width, height, pixels, side):
    """Bilinear resampling to side x side (pixel centres aligned, edges clamped)."""
    if (width, height) == (side, side):
        return pixels
    out = bytearray(side * side)
    for y in range(side):
        fy = min(max((y + 0.5) * height / side - 0.5, 0.0), height - 1.0)
        y0 = int(fy)
        y1 = min(y0 + 1, height - 1)
        wy = fy - y0
        for x in range(side):
            fx = min(max((x + 0.5) * width / side - 0.5, 0.0), width - 1.0)
            x0 = int(fx)
            x1 = min(x0 + 1, width - 1)
            wx = fx - x0
            top = pixels[y0 * width + x0] * (1 - wx) + pixels[y0 * width + x1] * wx
            bottom = pixels[y1 * width + x0] * (1 - wx) + pixels[y1 * width + x1] * wx
            out[y * side + x] = int(top * (1 - wy) + bottom * wy + 0.5)
    return out


class MnistHandler(BaseHandler):
    def initialize(self, context):
        super().initialize(context)
        # A lookup table: the normalised value of each grey level.
        self.table = [(v / 255.0 - MEAN) / STD for v in range(256)]
        log(f"MNIST handler ready for {context.model_name} {context.model_version}")

    def preprocess(self, data):
        image = input_bytes(data[0])
        try:
            width, height, grey = decode_grey(image)
        except PngError as e:
            raise HandlerError(400, f"not an image: {e}") from None
        pixels = resize(width, height, grey, SIDE)
        return [tensor([1, 1, SIDE, SIDE], [self.table[p] for p in pixels])]

    def postprocess(self, outputs):
        if not outputs:
            raise HandlerError(500, "the model returned no output")
        scores = values(outputs[0])
        if not scores:
            raise HandlerError(500, "the model returned an empty output")
        return [max(range(len(scores)), key=scores.__getitem__)]


WitWorld = export(MnistHandler)
