"""Run by tests/serve/test_dali_preprocess.py under another DALI release (on PYTHONPATH): the project's DALI
graph defined on that release — the GPU graph under the legacy executor (each decode path: DALI checks the
decoder's argument names as the graph is defined), the CPU twin run against OpenCV on photographs and
EXIF-rotated, progressive and grayscale JPEGs. Prints one JSON line."""
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nvidia.dali as dali  # noqa: E402

from damo_yolo.contract import DALI_DECODE_PATHS  # noqa: E402
from damo_yolo.data.preprocess import decode_image, preprocess  # noqa: E402
from damo_yolo.serving.dali_preprocess import build_pipeline  # noqa: E402

files = sorted(Path(sys.argv[1]).glob("*.jpg")) + [ROOT / "tests" / "data" / "bad_inputs" / name
                                                   for name in ("exif_rotated.jpg", "progressive.jpg", "grayscale.jpg")]
worst, sizes_equal = 0.0, True
for mode in ("stretch", "letterbox"):
    pipe = build_pipeline((256, 320), mode, 114.0, max_batch_size=1, device="cpu")
    for path in files:
        data = path.read_bytes()
        pipe.feed_input("IMAGE", [np.frombuffer(data, np.uint8)])
        chw, scale, size = (np.array(t.as_tensor()) for t in pipe.run())
        want, info = preprocess(decode_image(data, max_pixels=0), (256, 320), mode, 114.0)  # no Pillow here
        sizes_equal &= tuple(size[0]) == (info.orig_h, info.orig_w)
        worst = max(worst, float(np.abs(chw[0] - want).max()))
gpu = [build_pipeline((256, 320), "letterbox", 114.0, device="gpu", device_id=None, build=False, decode_path=path)
       for path in DALI_DECODE_PATHS]
print(json.dumps({"dali": dali.__version__, "images": len(files), "max_diff": worst, "sizes_equal": bool(sizes_equal),
                  "gpu_graph_legacy": all(pipe.exec_dynamic is False for pipe in gpu),
                  "decode_paths": list(DALI_DECODE_PATHS)}))
