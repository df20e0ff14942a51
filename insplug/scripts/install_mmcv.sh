#!/usr/bin/env bash
# Install full mmcv 2.1.0 (with compiled ops) into the given python's environment.
# Uses a prebuilt wheel from $SHARED_WHEELS (../shared/wheels) when one is there; otherwise
# builds it from the registry's source distribution, with the C++ standard raised to c++20
# (torch 2.14's headers need it; mmcv 2.1.0's setup.py hard-codes c++17). The built wheel is kept
# in .venv/wheels so a re-install does not compile again. Run after torch is installed.
set -euo pipefail
PY=${1:-.venv/bin/python}
SHARED_WHEELS=${SHARED_WHEELS:-../shared/wheels}
LOCAL_WHEELS=$(dirname "$(dirname "$PY")")/wheels
MMCV=mmcv==2.1.0

if "$PY" -c "import mmcv.ops, mmcv; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    echo "mmcv 2.1.0 with ops already installed"
    exit 0
fi
for dir in "$SHARED_WHEELS" "$LOCAL_WHEELS"; do
    if ls "$dir"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
        echo "installing mmcv 2.1.0 from the prebuilt wheel in $dir (no compile)"
        "$PY" -m pip install --no-cache-dir --find-links "$dir" "$MMCV"
        exit 0
    fi
done
echo "no prebuilt mmcv wheel found in $SHARED_WHEELS: compiling mmcv 2.1.0 with ops from source"
echo "(about 12 minutes on 2 cores)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --no-deps --no-binary :all: -d "$work" "$MMCV"
tar -xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
(
    cd "$work"/mmcv-2.1.0
    sed -i 's/-std=c++17/-std=c++20/g' setup.py
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip wheel --no-build-isolation --no-deps \
        --no-cache-dir -w "$work/dist" .
)
mkdir -p "$LOCAL_WHEELS"
cp "$work"/dist/mmcv-2.1.0-*.whl "$LOCAL_WHEELS"/
"$PY" -m pip install --no-cache-dir --find-links "$LOCAL_WHEELS" "$MMCV"
