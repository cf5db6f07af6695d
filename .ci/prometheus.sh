#!/usr/bin/env bash
# Make sure Debian's prometheus server is installed for the metrics test
# (tests/integration/test_prometheus_scrape.py starts it on loopback with its own config and data
# directory; the package's system service is not used). Prints the binary's path on stdout (the
# only stdout line); progress goes to stderr. Needs root (apt-get) when it is missing.
set -euo pipefail

path="${ROLLGUARD_PROMETHEUS:-$(command -v prometheus || echo /usr/bin/prometheus)}"
if [[ ! -x "$path" ]]; then
  echo "installing Debian's prometheus" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends prometheus >&2
  path=$(command -v prometheus || echo /usr/bin/prometheus)
fi
if [[ ! -x "$path" ]]; then
  echo "prometheus not found at $path after installation" >&2
  exit 1
fi
echo "$path"
