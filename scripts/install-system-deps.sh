#!/usr/bin/env bash
# Debian packages the tests and documents need: a browser for the browser tests, poppler for
# pdfsig/pdftoppm/pdftotext, a TrueType CJK font reportlab can embed, NSS tools for pdfsig trust.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v pdfsig >/dev/null && command -v pdftoppm >/dev/null || need+=(poppler-utils)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
command -v certutil >/dev/null || need+=(libnss3-tools)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing system packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
