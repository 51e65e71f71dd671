#!/usr/bin/env bash
# Install the browser the web demo's browser test drives (tests/demo/test_demo_browser.py): Debian's chromium and
# chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver). Without them that test skips, naming what is missing.
#
# Runs only on CI (the CI variable set) or when asked (--force); installs only what is missing, with apt-get as root
# (or through sudo when it needs no password). Never fatal: when the packages cannot be installed (no root, no apt, no
# network) it says so and exits 0, and the browser test skips.
set -uo pipefail

if [ -z "${CI:-}" ] && [ "${1:-}" != "--force" ]; then
    echo "install_browser: skipped (not on CI; pass --force to install chromium and chromium-driver)"
    exit 0
fi
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "install_browser: chromium and chromedriver already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get here; install chromium and its chromedriver yourself (the browser test skips)" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "install_browser: not root and no password-less sudo; the browser test will skip" >&2
    exit 0
fi
echo "install_browser: installing chromium and chromium-driver"
if "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver; then
    echo "install_browser: done ($(/usr/bin/chromium --version 2>/dev/null || echo 'chromium'))"
else
    echo "install_browser: apt-get failed; the browser test will skip" >&2
fi
exit 0
