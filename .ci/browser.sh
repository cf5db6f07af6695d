#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the reviewer-console browser test
# (tests/integration/test_console_browser.py drives it with Playwright via executable_path; we never
# run `playwright install`, which would download a browser build). Prints the browser's path on
# stdout (the only stdout line); progress goes to stderr. Needs root (apt-get) when it is missing.
set -euo pipefail

path="${ROLLGUARD_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$path" ]]; then
  echo "installing Debian's chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
fi
if [[ ! -x "$path" ]]; then
  echo "chromium not found at $path after installation" >&2
  exit 1
fi
echo "$path"
