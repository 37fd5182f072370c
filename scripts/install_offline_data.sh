#!/bin/sh
# Install Debian's dataset-fashion-mnist (the project's offline default data) when it is
# absent and we can: running as root with apt-get. Never fails the build: without it the
# data paths fall back to torchvision downloads (download=True).
set -u
DIR=/usr/share/datasets/fashion-mnist
if [ -f "$DIR/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing dataset-fashion-mnist (Debian) into $DIR"
  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) ||
    echo "warning: could not install dataset-fashion-mnist; use download=True or set DTA_DATA_ROOT" >&2
else
  echo "note: $DIR absent and not root with apt; Fashion-MNIST tests will skip (see README)" >&2
fi
exit 0
