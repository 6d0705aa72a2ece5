#!/usr/bin/env bash
# The browser tests drive Debian's chromium. Install it when it is missing and we can (root with
# apt-get); otherwise stop at once with the one command to run.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests (once)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    command -v chromium >/dev/null 2>&1 && exit 0
    echo "error: apt-get could not install chromium; run: apt-get install chromium" >&2
    exit 1
fi
echo "error: the browser tests need Debian's chromium; run: sudo apt-get install chromium" >&2
exit 1
