"""The GPU target's DALI preprocessing, built here with DALI's CPU operators: it equals the OpenCV
preprocessing of the CPU target (photographs, synthetic images, both resize modes, the awkward inputs),
and the DALI python-backend model serves through the real tritonserver with per-request errors."""
from __future__ import annotations

import re

import numpy as np
import pytest
from bad_inputs import corpus
from serving import assert_same_detections, infer_raw, local_detections, running_server

from damo_yolo import contract as C
from damo_yolo.data.preprocess import ResizeInfo, decode_image, preprocess
from damo_yolo.serving import platform

dali = pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install -e .[dali])")
from damo_yolo.serving.dali_preprocess import build_pipeline  # noqa: E402

SIZE = (256, 320)


def _dali(pipe, datas: list[bytes]):
    pipe.feed_input("IMAGE", [np.frombuffer(d, np.uint8) for d in datas])
    out, scale, size = pipe.run()
    return out.as_array(), scale.as_array(), size.as_array()


def _assert_close(got, want, max_diff=1.0, min_identical=0.8):
    diff = np.abs(got - want)
    assert diff.max() <= max_diff, f"max difference {diff.max()} levels"
    assert (diff == 0).mean() >= min_identical, f"only {(diff == 0).mean():.1%} of the values are identical"


@pytest.mark.parametrize("mode,pad", [("stretch", 0.0), ("letterbox", 114.0)])
def test_dali_equals_opencv_on_photographs(sample_images, mode, pad):
    pipe = build_pipeline(SIZE, mode, pad, max_batch_size=8, device="cpu")
    datas = [p.read_bytes() for p in sample_images]
    chw, scale, size = _dali(pipe, datas)
    assert chw.shape == (len(datas), 3, *SIZE) and chw.dtype == np.float32
    for i, data in enumerate(datas):
        want, info = preprocess(decode_image(data), SIZE, mode, pad)
        _assert_close(chw[i], want)
        assert tuple(size[i]) == (info.orig_h, info.orig_w)
        np.testing.assert_allclose(scale[i], (info.scale_y, info.scale_x), rtol=1e-6)
    # a smaller batch through the same pipeline
    assert _dali(pipe, datas[:2])[0].shape[0] == 2


def test_dali_handles_the_awkward_inputs_like_opencv():
    for name, (data, expect) in corpus(huge=False).items():
        pipe = build_pipeline(SIZE, "stretch", 0.0, max_batch_size=1, device="cpu")
        try:
            decode_image(data)
        except ValueError:  # what the OpenCV path refuses, DALI refuses too (or the container check first)
            if data[:3] == b"\xff\xd8\xff" or data[:4] == b"\x89PNG":
                with pytest.raises(RuntimeError):
                    _dali(pipe, [data])
            continue
        want, info = preprocess(decode_image(data), SIZE)
        chw, scale, size = _dali(pipe, [data])
        assert tuple(size[0]) == (info.orig_h, info.orig_w), name  # EXIF rotation applied by both
        # CMYK → RGB conversion formulas differ by a level or two; everything else within rounding
        _assert_close(chw[0], want, max_diff=2.0 if name == "cmyk.jpg" else 1.0,
                      min_identical=0.0 if name == "cmyk.jpg" else 0.8)


def _decoder_device(pipe) -> str:
    """The device of a defined graph's image decoder, from DALI's operator specs."""
    (spec,) = [str(op.spec) for op in pipe._ops if "decoders__Image" in str(op.spec)]
    return re.search(r"device: (\w+)", spec).group(1)


@pytest.mark.parametrize("decode_path", C.DALI_DECODE_PATHS)
@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_gpu_graph_is_valid_under_the_executor_of_the_dali_backend(tmp_path, mode, decode_path):
    """The GPU graph exactly as model.dali holds it (nvJPEG "mixed" decoder, GPU resize), defined with the
    real DALI under the legacy executor that Triton's DALI backend runs: DALI refuses any GPU -> CPU
    transition at definition, so defining it proves the graph loads there. Serialized as damo-export writes it,
    but without CUDA (``device_id=None``, which this DALI allows; on a GPU host it is written for device 0).
    Each decode path (damo-export --dali-decode): DALI checks every argument name against the operator's schema
    as the graph is defined, so ``hw_decoder_load`` exists in this DALI's decoder."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from damo_yolo.serving.dali_preprocess import LEGACY_EXECUTOR, serialize_pipeline
    assert LEGACY_EXECUTOR == {"exec_dynamic": False}

    # the check is live in this DALI: a graph that reads sizes from the decoded GPU image is refused
    @pipeline_def(batch_size=2, num_threads=1, device_id=None, **LEGACY_EXECUTOR)
    def reads_gpu_shape():
        image = fn.decoders.image(fn.external_source(name="IMAGE", dtype=types.UINT8, ndim=1), device="mixed")
        size = image.shape(dtype=types.FLOAT)
        return fn.resize(image, resize_x=size[1] / 2, resize_y=size[0] / 2)
    with pytest.raises(RuntimeError, match="transition from GPU to CPU"):
        reads_gpu_shape()

    pipe = build_pipeline(SIZE, mode, 114.0, max_batch_size=8, device="gpu", device_id=None, build=False,
                          decode_path=decode_path)
    assert pipe.exec_dynamic is False
    pipe.serialize()  # defines the graph
    assert _decoder_device(pipe) == ("cpu" if decode_path == "cpu" else "mixed")  # decoded on the GPU or the CPU
    path = serialize_pipeline(tmp_path / "model.dali", SIZE, mode, 114.0, max_batch_size=8, device="gpu",
                              device_id=None, decode_path=decode_path)
    serialized = path.read_bytes()
    assert b"PeekImageShape" in serialized  # sized on the CPU
    assert (b"hw_decoder_load" in serialized) == (decode_path == "cuda")  # the hardware JPEG decoder left out


def test_bad_options():
    with pytest.raises(ValueError, match="unknown resize mode"):
        build_pipeline(SIZE, "crop", device="cpu")
    with pytest.raises(ValueError, match="unknown DALI device"):
        build_pipeline(SIZE, device="tpu")
    with pytest.raises(ValueError, match="unknown DALI decode path 'hardware'; choose auto or cuda or cpu"):
        build_pipeline(SIZE, device="gpu", device_id=None, build=False, decode_path="hardware")
    with pytest.raises(ValueError, match="decode path 'cuda' is the GPU graph's"):
        build_pipeline(SIZE, device="cpu", decode_path="cuda")


@pytest.fixture(scope="module")
def dali_server(trained_synthetic, tmp_path_factory):
    import tritonclient.http as httpclient

    from damo_yolo.tools.export import export_repository
    repo = export_repository(trained_synthetic["checkpoint"], tmp_path_factory.mktemp("dali") / "triton_models",
                             preprocess="dali", thresholds="evaluation")
    with running_server(repo, repo.parent / "server.log") as srv:
        client = httpclient.InferenceServerClient(srv.http_url, network_timeout=120.0, concurrency=8)
        try:
            yield client, httpclient
        finally:  # open keep-alive connections would hold the server's shutdown for its 30 s exit timeout
            client.close()


@pytest.mark.slow
def test_served_with_dali_equals_pytorch(dali_server, trained_synthetic, sample_images):
    from damo_yolo.models import build_model, load_checkpoint
    client, mod = dali_server
    model = build_model("Ns", num_classes=8)
    meta = load_checkpoint(model, trained_synthetic["checkpoint"])
    model.eval()
    pipe = build_pipeline(tuple(meta.input_size), meta.resize, meta.pad_value, 8, device="cpu")
    paths = sample_images[:4] + sorted((trained_synthetic["data"] / "val").glob("*.jpg"))[:4]
    datas = [p.read_bytes() for p in paths]
    compared = 0
    for batch in (datas[:4], datas[4:]):  # batches of 4 different-sized images
        chw, scale, size = _dali(pipe, batch)
        for i, got in enumerate(infer_raw(client, mod, batch)):
            info = ResizeInfo(int(size[i][0]), int(size[i][1]), float(scale[i][0]), float(scale[i][1]))
            want = local_detections(model, meta, batch[i], chw_info=(chw[i], info))
            compared += assert_same_detections(got, want, meta.max_detections)
            # and against the OpenCV path: the confident detections agree
            cv_boxes, cv_scores, cv_classes = local_detections(model, meta, batch[i])
            for box, score, cls in zip(*got):
                if score > 0.5:
                    assert ((cv_classes == cls) & (np.abs(cv_boxes - box).max(1) <= 2.0)).any(), (paths[i], box)
    assert compared > 30


@pytest.mark.slow
def test_dali_server_answers_good_requests_batched_with_bad_ones(dali_server, sample_images):
    client, mod = dali_server
    good = sample_images[1].read_bytes()
    # the refused ones, among them JPEG/PNG files that pass the container checks and fail in DALI's decoder
    payloads = [good] + [data for data, expect in corpus(huge=False).values() if expect != "answer"] + [good, good]

    def send(data):
        image = mod.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[data]], dtype=object))
        return client.async_infer("damo_yolo", [image])

    def outcome(pending):
        try:
            out = pending.get_result()
            return out.as_numpy("boxes")[0], out.as_numpy("scores")[0, :out.as_numpy("num_detections")[0, 0]]
        except Exception as exc:  # InferenceServerException
            return exc

    for _ in range(3):  # concurrent requests, so the dynamic batcher mixes good and bad ones
        results = [outcome(p) for p in [send(data) for data in payloads]]
        for data, result in zip(payloads, results):
            if data is good:
                assert not isinstance(result, Exception), result
                assert len(result[1]) > 0
            else:
                assert isinstance(result, Exception), "a bad image got an answer"
                message = str(result)
                assert ("image 0 of the request" in message or "cannot decode the image" in message) and \
                    len(message) < 400, message


def test_serialized_pipeline_equals_opencv_on_every_photo_and_the_corpus(tmp_path, sample_images):
    """model.dali, the file Triton's DALI backend loads, from the same definition (CPU operators here):
    deserialized through DALI's API it matches OpenCV on every shared photograph and refuses what OpenCV
    refuses in the bad-input corpus."""
    from nvidia.dali import Pipeline

    from damo_yolo.serving.dali_preprocess import serialize_pipeline
    path = serialize_pipeline(tmp_path / "model.dali", SIZE, "stretch", 0.0, max_batch_size=1, device="cpu")
    pipe = Pipeline.deserialize(serialized_pipeline=path.read_bytes(), batch_size=1, num_threads=2, device_id=None)
    pipe.build()
    worst = 0.0
    for image in sample_images:
        data = image.read_bytes()
        chw, scale, size = _dali(pipe, [data])
        want, info = preprocess(decode_image(data), SIZE)
        _assert_close(chw[0], want)
        worst = max(worst, float(np.abs(chw[0] - want).max()))
        assert tuple(size[0]) == (info.orig_h, info.orig_w)
    assert worst <= 1.0
    print(f"\nserialized DALI pipeline vs OpenCV on {len(sample_images)} photographs: max |diff| {worst:g} grey level")
    for name, (data, expect) in corpus(huge=False).items():
        try:
            decode_image(data)
        except ValueError:
            if data[:3] == b"\xff\xd8\xff" or data[:4] == b"\x89PNG":  # containers the decoder itself must refuse
                fresh = Pipeline.deserialize(serialized_pipeline=path.read_bytes(), batch_size=1, num_threads=1,
                                             device_id=None)
                fresh.build()  # a failed run can leave a pipeline unusable: a new one per refusal
                with pytest.raises(RuntimeError, match="(?i)decod|image|jpeg|png|corrupt"):
                    _dali(fresh, [data])
            continue
        assert _dali(pipe, [data])[0].shape == (1, 3, *SIZE), name


OTHER_DALI = "2.1.1"  # before 2.2: its main operators ignore EXIF orientation (the container's do not)


def test_the_graph_holds_on_the_other_dali_line(shared_dir):
    """Before DALI 2.2 the main header reader and decoder ignore EXIF orientation (their nvImageCodec twins in
    fn.experimental apply it); the graph picks the orientation-aware pair on each release. The tests here run
    the serving container's DALI (its main operators); this runs the fn.experimental pair on an older DALI,
    installed in its own environment: the GPU graph defines under the legacy executor and the CPU twin equals OpenCV,
    EXIF-rotated JPEG included."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    venv = Path.home() / ".cache" / "damo-yolo" / f"dali-{OTHER_DALI}"  # its own environment, made once
    python = venv / "bin" / "python"
    if not (venv / ".ready").is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        run = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              "--only-binary=:all:", f"{platform.DALI_PACKAGE}=={OTHER_DALI}", "numpy==1.26.4",
                              "opencv-python-headless==4.11.0.86"], capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-1000:]
        (venv / ".ready").touch()
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([str(python), str(root / "tests" / "dali_line_check.py"), str(shared_dir / "data" / "images")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["dali"] == OTHER_DALI and result["images"] >= 8, result
    assert result["sizes_equal"] and result["max_diff"] <= 1.0 and result["gpu_graph_legacy"], result
    assert result["decode_paths"] == list(C.DALI_DECODE_PATHS), result  # each decode path's GPU graph defined


def test_the_graph_tests_run_the_serving_containers_dali():
    """CI defines and runs the graph on exactly the DALI of the serving container's DALI backend; a model.dali
    written by another release is refused by damo-export --target gpu."""
    from damo_yolo.serving import platform
    assert dali.__version__ == platform.DALI
    assert platform.dali_mismatch(platform.DALI) == "" and platform.dali_mismatch("2.2.1") == ""
    problem = platform.dali_mismatch(OTHER_DALI)
    assert f"DALI {OTHER_DALI} is installed, but the serving container runs DALI {platform.DALI}" in problem
    assert f"pip install {platform.DALI_PACKAGE}=={platform.DALI}" in problem
