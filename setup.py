"""insplug: instance-segmentation methods as MMDetection 3.x and Detectron2 components."""
import os.path as osp

from setuptools import find_packages, setup

here = osp.dirname(osp.abspath(__file__))
version = {}
with open(osp.join(here, 'insplug', 'version.py')) as f:
    exec(f.read(), version)

setup(
    name='insplug',
    version=version['__version__'],
    description='Instance-segmentation methods of a research survey as pluggable '
                'MMDetection 3.x and Detectron2 components',
    long_description=open(osp.join(here, 'README.md')).read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.11',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    # the configs travel inside the package (insplug/.mim/configs links to configs/), so a
    # pip-installed insplug resolves `insplug::PATH` configs without the repository
    package_data={'insplug': ['.mim/model-index.yml', '.mim/configs/**/*.py',
                              '.mim/configs/**/*.yaml', 'scripts/*.sh',
                              'core/zsi/embeddings/*.pt']},
    entry_points={'console_scripts': [
        'insplug-train=insplug.cli.train:main',
        'insplug-test=insplug.cli.test:main',
        'insplug-benchmark=insplug.cli.benchmark:main',
        'insplug-convert=insplug.cli.convert:main',
        'insplug-install-mmcv=insplug.cli.install_mmcv:main',
    ]},
    install_requires=[
        'torch==2.14.1',
        'torchvision==0.29.1',
        'numpy',
        'scipy',
        'pycocotools>=2.0,<2.1',
        'setuptools<81',  # mmengine 0.10.7 imports pkg_resources
    ],
    extras_require={
        # Full mmcv 2.1.0 (compiled ops) is NOT listed: PyPI has no wheel of it for torch 2.14
        # and its source build fails (C++17 flag) after minutes of compiling. It is installed by
        # `insplug-install-mmcv` (prebuilt wheel, or a C++20 build); without it `import insplug`
        # says so and names that command.
        # faster-coco-eval: InsplugCocoMetric's default COCO backend when installed
        'mmdet': ['mmengine==0.10.7', 'mmdet==3.3.0', 'opencv-python-headless',
                  'faster-coco-eval'],
        # detectron2 itself is not on PyPI: build it from its repository against the
        # installed torch (README, "Detectron2"); this extra installs its Python dependencies.
        'detectron2': ['fvcore', 'iopath', 'omegaconf', 'hydra-core', 'cloudpickle',
                       'tabulate', 'yacs', 'tensorboard'],
        # cityscapesscripts: the official Cityscapes evaluator (InsplugCityscapesMetric)
        # onnx, onnxruntime, onnxscript (torch.onnx imports it): tests/deploy (ONNX export)
        # pytest-xdist: `make test` runs the suite in one process per core (each test uses
        # one thread, tests/conftest.py)
        'test': ['pytest', 'pytest-timeout', 'pytest-xdist', 'faster-coco-eval', 'cityscapesscripts', 'onnx',
                 'onnxruntime', 'onnxscript'],
    },
)
