"""Record the names the official detectron2 projects register, for the no-collision test.

    python tools/official_parity/list_official_registrations.py \
        --official-repo adelaidet=/tmp/official/AdelaiDet@3672122 \
        --official-repo centermask2=/tmp/official/centermask2@6adabd6 \
        --official-repo sparseinst=/tmp/official/SparseInst@a899015

Reads every ``.py`` file of each checkout (no import, so nothing needs to build) and lists each
``@<REGISTRY>.register()`` decorator with the class or function it decorates. Writes
``tests/fixtures/official/registrations/official_registrations.json``:
``{project: {'commit': ..., 'registrations': [[registry, name], ...]}}``, read by
``tests/d2_adapters/test_d2_isolation.py``.
"""
import argparse
import ast
import json
import os
import os.path as osp
import subprocess

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OUT = osp.join(REPO, 'tests', 'fixtures', 'official', 'registrations',
               'official_registrations.json')


def registrations(root):
    """``[(registry name, registered name)]`` of the ``@X_REGISTRY.register(...)`` decorators
    under ``root`` (a name given as ``register('name')`` wins over the decorated object's)."""
    found = set()
    for folder, _, files in os.walk(root):
        for file in files:
            if not file.endswith('.py'):
                continue
            with open(osp.join(folder, file), encoding='utf-8') as f:
                try:
                    tree = ast.parse(f.read())
                except SyntaxError:
                    continue
            for node in ast.walk(tree):
                if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                    continue
                for deco in node.decorator_list:
                    call = deco if isinstance(deco, ast.Call) else None
                    func = call.func if call else deco
                    if (isinstance(func, ast.Attribute) and func.attr == 'register'
                            and isinstance(func.value, ast.Name)
                            and func.value.id.endswith('REGISTRY')):
                        name = node.name
                        if call and call.args and isinstance(call.args[0], ast.Constant):
                            name = call.args[0].value
                        found.add((func.value.id, name))
    return sorted(found)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', action='append', required=True,
                        help='PROJECT=PATH[@COMMIT] of a checkout (repeatable)')
    args = parser.parse_args()
    record = {}
    for item in args.official_repo:
        project, path = item.split('=', 1)
        path, _, commit = path.partition('@')
        commit = commit or subprocess.run(['git', '-C', path, 'rev-parse', 'HEAD'],
                                          capture_output=True, text=True).stdout.strip()
        record[project] = dict(commit=commit, registrations=[list(r) for r in
                                                             registrations(path)])
    os.makedirs(osp.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True)
    print(f'wrote {OUT}: ' + ', '.join(f'{p} {len(r["registrations"])}'
                                         for p, r in record.items()))


if __name__ == '__main__':
    main()
