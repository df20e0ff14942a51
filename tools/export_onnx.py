"""`python tools/export_onnx.py CONFIG CKPT --shape H W [--out F.onnx]`: see
:mod:`insplug.deploy.onnx_export`."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone too

from insplug.deploy.onnx_export import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
