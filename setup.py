"""damo-yolo: DAMO-YOLO training, export to NVIDIA Triton, and a thin client.

`pip install .` installs the client alone (no torch); extras add the rest:
`.[train]` training + evaluation, `.[export]` ONNX export, `.[server]` the bundled tritonserver and the
CPU serving backend, `.[dali]` NVIDIA DALI preprocessing, `.[video]` PyAV, `.[evaluate]` damo-client
evaluate's scoring, `.[test]` the test tools, `.[all]` everything that runs on a CPU host, `.[gpu]` TensorRT +
DALI for GPU hosts.
"""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = next(line.split('"')[1] for line in (ROOT / "damo_yolo" / "__init__.py").read_text().splitlines()
               if line.startswith("__version__"))

# Pins checked to install and work together on CPU hosts (Python 3.11): see README "Dependencies".
CLIENT = [
    "numpy==1.26.4",  # the Triton wheels need numpy<2
    "setuptools>=77.0.3,<81",  # tritonclient's shared-memory module and mmengine import pkg_resources
    "tritonclient[grpc,http]==2.51.0",  # matches the bundled server; ships perf_analyzer
    "protobuf==4.25.9",  # tritonclient[grpc] needs protobuf<5
    "opencv-python-headless==4.11.0.86",  # last release that accepts numpy<2; no libGL needed
    "click==8.5.1",
]
TORCH = ["torch==2.13.0"]  # the CPU build; other versions pull a multi-GB CUDA build
EXTRAS = {
    "train": TORCH + ["mmengine-lite==0.10.7", "matplotlib==3.11.2", "pycocotools==2.0.11", "pillow==13.0.0",
              "tensorboard==2.20.0"],  # newest release that accepts protobuf<5 (tritonclient caps it)
    # onnx-graphsurgeon: NVIDIA's graph editor appends EfficientNMS_TRT to the (FP32 or Q/DQ INT8) detector graph
    "export": TORCH + ["onnx==1.22.0", "onnxruntime==1.32.0", "onnxslim==0.1.98", "onnx-graphsurgeon==0.6.1",
                       "pillow==13.0.0"],
    # pillow: an image's size from its header, before decoding (the pixel limit)
    # the python-backend models' own dependencies, inside NVIDIA's Triton containers (both images)
    "backend": ["onnxruntime==1.32.0", "pillow==13.0.0"],
    # PyAV (FFmpeg's libraries, H.264 included): videos written (damo-synthetic-video) and read; norfair: the
    # SDK's tracker (damo_client.tracking; numpy<2, as the Triton wheels need); rich: damo-client's progress bars;
    # tenacity: live streams reopened with backoff (damo_client.stream)
    "video": ["av==18.1.0", "norfair==2.3.0", "filterpy==1.4.5", "rich==14.3.4", "tenacity==9.2.1"],
    # damo-client evaluate: served answers scored with pycocotools (no torch)
    "evaluate": ["pycocotools==2.0.11"],
    # the CPU target's other detector runtime (damo-export --cpu-runtime openvino): the CPU image, development
    "openvino": ["openvino==2026.4.1"],
    # the bundled tritonserver 2.51 (development and tests on this host only) and the models' dependencies
    "server": ["nvidia-pytriton==0.7.0", "onnxruntime==1.32.0", "openvino==2026.4.1", "pillow==13.0.0"],
    # cuda-python: the GPU detection runs for real in the tests (and says there is no GPU)
    # kubernetes-validate: deploy/'s manifests against the API schemas offline; promql-parser: its PromQL;
    # prometheus-client: reading the server's /metrics; polygraphy: NVIDIA's model inspector reads the end2end graphs
    # ruff (lint + import order) and mypy: the house's checks, run by scripts/test.sh and .pre-commit-config.yaml
    # h2: the HTTP/2 frames a stopping server sends a gRPC connection (GOAWAY); dnspython: asks the test's DNS server
    "test": ["pytest==9.2.0", "cuda-python==13.3.0", "kubernetes-validate==1.37.0", "promql-parser==0.11.0",
             "prometheus-client==0.26.0", "pyyaml>=6.0.3,<7", "polygraphy==0.53.6", "ruff==0.17.6", "mypy==2.4.1",
             "h2==4.4.1", "dnspython==2.9.2",
             # py-motmetrics: MOTA / IDF1 of tracks against the synthetic clips' ground truth (pandas<3: numpy<2)
             "motmetrics==1.4.0", "pandas==2.3.3"],
    # NVIDIA DALI: the GPU target's preprocessing, the serving container's DALI; its CPU operators run (and are
    # tested) anywhere
    "dali": ["nvidia-dali-cuda130==2.2.0"],
    # GPU hosts: exactly the TensorRT and DALI of the serving container (damo_yolo/serving/platform.py:
    # nvcr.io/nvidia/tritonserver:26.08-py3, CUDA 13); TensorRT's libraries download from NVIDIA's index
    # (pip --extra-index-url https://pypi.nvidia.com). cuda-python finds the GPU.
    "gpu": ["tensorrt-cu13==11.2.1.2", "nvidia-dali-cuda130==2.2.0", "cuda-python==13.3.0"],
}
EXTRAS["all"] = sorted({req for key in ("train", "export", "server", "dali", "video", "evaluate", "test")
                        for req in EXTRAS[key]})

setup(
    name="damo-yolo",
    version=VERSION,
    description="DAMO-YOLO detector: mmengine training, Triton Inference Server deployment and client",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["damo_yolo", "damo_yolo.*", "damo_client", "damo_client.*"]),
    include_package_data=True,
    install_requires=CLIENT,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "damo-zoo=damo_yolo.tools.zoo:main",
            "damo-synthetic=damo_yolo.data.synthetic:main",
            "damo-synthetic-video=damo_yolo.data.synthetic_video:main",
            "damo-train=damo_yolo.tools.train:main",
            "damo-browse-dataset=damo_yolo.tools.browse_dataset:main",
            "damo-test=damo_yolo.tools.test:main",
            "damo-export=damo_yolo.tools.export:main",
            "tritonserver=damo_yolo.serving.tritonserver:main",
            "damo-client=damo_client.cli:cli",
            "damo-demo=damo_yolo.tools.demo:main",
        ],
    },
)
