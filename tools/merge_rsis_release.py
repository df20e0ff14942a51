"""Merge a released RSIS model's ``encoder.pt`` and ``decoder.pt`` (imatge-upc/rsis,
``models/<name>/``) into one checkpoint for ``tools/convert_checkpoint.py rsis``.

    python tools/merge_rsis_release.py models/rsis-pascal/encoder.pt \
        models/rsis-pascal/decoder.pt rsis_pascal_merged.pt

Both files are read weights-only (:func:`insplug.checkpoints.safe_load`); keys get the prefixes
``encoder.`` / ``decoder.`` (the converter accepts them, or their plain union).
"""
import argparse

import torch

from insplug.checkpoints.safe_load import safe_load


def merge(encoder, decoder):
    """Two ``{key: Tensor}`` -> one, prefixed; a ``module.`` prefix (DataParallel) is dropped."""
    out = {}
    for prefix, sd in (('encoder.', encoder), ('decoder.', decoder)):
        sd = sd.get('state_dict', sd) if isinstance(sd, dict) else sd
        for k, v in sd.items():
            out[prefix + (k[len('module.'):] if k.startswith('module.') else k)] = v
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('encoder')
    parser.add_argument('decoder')
    parser.add_argument('out')
    args = parser.parse_args()
    merged = merge(safe_load(args.encoder, map_location='cpu'),
                   safe_load(args.decoder, map_location='cpu'))
    torch.save(merged, args.out)
    print(f'{len(merged)} tensors -> {args.out}')


if __name__ == '__main__':
    main()
