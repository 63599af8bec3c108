"""aero_verl: AERO (Adaptive Efficient Rollout Optimization, arXiv 2602.14338) as a verl extension.

`hydra_configs/` is a top-level folder of the repository and ships inside the package as
`aero_verl.hydra_configs`, so the configs resolve from any directory, editable install or not.
"""

from setuptools import find_packages, setup

VERL_VERSION = "0.9.1"  # pinned exactly: aero_verl subclasses and registers into verl internals

install_requires = [
    f"verl=={VERL_VERSION}",
    # verl 0.9.1 imports these at run time but declares them only in its `verl-core` extra:
    "cachetools",
    "uvicorn",
    "fastapi",
    "TransferQueue>=0.1.10",
    # no exact torch pin: the local CPU wheel (2.13) and verl's GPU stack (2.11) both satisfy it
    "torch>=2.6",
    "ray[default]>=2.41.0",
    "hydra-core>=1.3",
    "omegaconf>=2.3",
    "transformers>=5.5.3,!=5.6.0,<5.11",
    "tokenizers",
    "numpy>=2.0",
    "datasets",
    "pyarrow>=19.0.0",
    "math-verify>=0.7",
    "tqdm",
    "matplotlib>=3.7",  # aero_verl.report: the picture of a run the demo writes at its end
]

extras_require = {
    "test": ["pytest>=8", "pytest-timeout", "hypothesis>=6"],
    # GPU clusters: verl's vLLM stack (pins torch 2.11 and CUDA wheels). flash-attn is sdist-only and
    # needs CUDA plus --no-build-isolation: install it first (see README), then this extra.
    "gpu": [f"verl[vllm]=={VERL_VERSION}", "vllm==0.24.0", "flash-attn==2.8.3"],
}

setup(
    name="aero_verl",
    version="0.1.0",
    description="AERO adaptive rollouts, selective rejection and Beta posterior for verl GRPO training",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["aero_verl", "aero_verl.*"]) + ["aero_verl.hydra_configs"],
    package_dir={"aero_verl.hydra_configs": "hydra_configs"},
    package_data={"aero_verl.hydra_configs": ["*.yaml", "*/*.yaml"]},
    include_package_data=True,
    install_requires=install_requires,
    extras_require=extras_require,
    entry_points={
        # `import verl` loads this in every verl process: registers the AERO trainer and advantage
        # estimator, and the CPU platform/rollout only when VERL_PLATFORM=cpu.
        "verl.plugins": ["aero = aero_verl.verl_ext.plugin"],
        "console_scripts": ["aero-verl = aero_verl.main_ppo:main"],
    },
)
