#!/usr/bin/env bash
# Packs Debian 12's Qt 6 and QCustomPlot, with the libraries they load and a font, into one
# archive that a device call carries: the GPU machine has no Qt and cannot download it.
# Packages are unpacked with dpkg -x (never installed). Usage:
#   tools/qt_prefix.sh [archive]          (default gpu-carry/qt-prefix.tar.xz)
# On the GPU machine: tools/gpu_explorer.sh unpacks it and builds the Explorer against it.
set -euo pipefail
archive=${1:-gpu-carry/qt-prefix.tar.xz}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Build-time: headers, CMake packages, moc/rcc/uic, the GL headers Qt6Gui's CMake package
# asks for. Run-time: the libraries Qt and the offscreen platform plugin load, except glibc,
# libstdc++, libgcc and libgomp (the compiler's own, newer there), which every machine has.
packages=(
  qt6-base-dev qt6-base-dev-tools qmake6 qmake6-bin qt6-svg-dev libqcustomplot-dev
  libqt6core6 libqt6gui6 libqt6widgets6 libqt6printsupport6 libqt6test6 libqt6concurrent6 libqt6dbus6
  libqt6svg6 libqt6opengl6 libqt6openglwidgets6 libqt6network6 libqt6sql6 libqt6xml6 libqcustomplot2.1-qt6 qt6-qpa-plugins
  libgl-dev libegl-dev libglx-dev libopengl-dev libgles-dev libgl1 libegl1 libglx0 libopengl0 libgles2 libglvnd0
  libb2-1 libbrotli1 libbsd0 libcap2 libdbus-1-3 libdouble-conversion3 libexpat1 libfontconfig1 libfreetype6
  libgcrypt20 libglib2.0-0 libgpg-error0 libgraphite2-3 libharfbuzz0b libicu72 liblz4-1 liblzma5 libmd0
  libmd4c0 libpcre2-16-0 libpcre2-8-0 libpng16-16 libsystemd0 libx11-6 libxau6 libxcb1 libxdmcp6 libxkbcommon0
  libzstd1 zlib1g libx11-data fonts-dejavu-core
)
(cd "$work" && apt-get download "${packages[@]}" >/dev/null)
mkdir -p "$work/prefix"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/prefix"; done
# What a build and an offscreen run never read.
rm -rf "$work/prefix/usr/share/doc" "$work/prefix/usr/share/man" "$work/prefix/usr/share/lintian" \
  "$work/prefix/usr/share/locale" "$work/prefix/usr/share/bug" "$work/prefix/etc" "$work/prefix/usr/share/X11/locale" \
  "$work/prefix/usr/lib/x86_64-linux-gnu/"libgio-2.0*
# Library links that point at /lib or /usr/lib absolutely are made relative to the prefix.
find "$work/prefix" -type l | while read -r link; do
  target=$(readlink "$link")
  case "$target" in
    /*) [ -e "$work/prefix$target" ] && ln -sfn "$(realpath --relative-to="$(dirname "$link")" "$work/prefix$target")" "$link" ;;
  esac
done
mkdir -p "$(dirname "$archive")"
# Written beside and renamed: an interrupted run leaves the archive it had.
tar -C "$work/prefix" -cf - . | xz -9e -T0 >"$archive.partial"
mv "$archive.partial" "$archive"
ls -l "$archive"
