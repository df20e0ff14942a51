"""Convert an official checkpoint to insplug's layout.

    python tools/convert_checkpoint.py METHOD IN OUT [--config CONFIG] [--to detectron2]
                                       [--unsafe-load]
    python tools/convert_checkpoint.py --list

The official file is read weights-only; ``--unsafe-load`` allows a full unpickle of a file you
trust (old releases saved whole training states). With ``--config`` the converted weights must
fill every tensor of the model the config builds.
"""
import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Convert an official checkpoint for insplug')
    parser.add_argument('method', nargs='?', help='converter name (--list shows them)')
    parser.add_argument('src', nargs='?', help='the official checkpoint')
    parser.add_argument('dst', nargs='?', help='where to write the converted checkpoint')
    parser.add_argument('--config', help='check that the result fills this config\'s model')
    parser.add_argument('--to', choices=['mmdet', 'detectron2'], default='mmdet',
                        help='layout of OUT: insplug\'s mmdet model (default; insplug\'s '
                             'detectron2 checkpointer reads it too) or a detectron2 checkpoint')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='allow a full unpickle of SRC (runs code in the file: trusted '
                             'files only)')
    parser.add_argument('--list', action='store_true', help='list the converters')
    return parser.parse_args(argv)


def main(argv=None):
    from insplug.checkpoints import UnsafeCheckpointError
    from insplug.converters import CONVERTERS, ConversionError, _import_all, convert_checkpoint
    args = parse_args(argv)
    if args.list or args.method is None:
        _import_all()
        for name, converter in sorted(CONVERTERS.items()):
            print(f'{name:20s} {converter.source}')
        return 0
    if args.src is None or args.dst is None:
        print('error: METHOD IN OUT are required (or --list)', file=sys.stderr)
        return 2
    try:
        trust = True if args.unsafe_load else None
        if args.to == 'detectron2':
            from insplug.converters.to_detectron2 import convert_checkpoint_to_detectron2
            converted = convert_checkpoint_to_detectron2(args.method, args.src, args.dst,
                                                         config=args.config, trust=trust)
        else:
            converted = convert_checkpoint(args.method, args.src, args.dst, config=args.config,
                                           trust=trust)
    except (ConversionError, UnsafeCheckpointError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(f'wrote {args.dst}: {len(converted)} tensors ({args.method})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
