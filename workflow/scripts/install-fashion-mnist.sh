#!/bin/sh
# Make Fashion-MNIST available offline for the demo: Debian's dataset-fashion-mnist package
# (the four IDX files in /usr/share/datasets/fashion-mnist) on Debian/Ubuntu, as root or with
# passwordless sudo. Where that cannot be done this script says why and exits 0: the workflow's
# data step then downloads the files, and if that fails too it stops with the remedy.
# CCE_IGNORE_SYSTEM_DATA=1 skips it (the data step then ignores system directories as well).
DIR=/usr/share/datasets/fashion-mnist
PKG=dataset-fashion-mnist

[ "${CCE_IGNORE_SYSTEM_DATA:-0}" = 1 ] && exit 0
[ -d "$DIR" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "Fashion-MNIST: not a Debian/Ubuntu system (no apt-get); the workflow will download it."
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "Fashion-MNIST: cannot install Debian's $PKG (not root, no passwordless sudo);"
    echo "  the workflow will download it. Offline, run: sudo apt-get install $PKG"
    exit 0
fi
echo "Fashion-MNIST: installing Debian's $PKG (files in $DIR) ..."
if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$PKG" >/dev/null; then
    echo "Fashion-MNIST: installed in $DIR"
else
    echo "Fashion-MNIST: apt-get could not install $PKG; the workflow will try to download it."
fi
exit 0
