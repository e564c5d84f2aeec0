#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only when some are missing.
set -euo pipefail
pkgs=(cmake make gcc clang libclang-rt-14-dev pkg-config libcriterion-dev libjansson-dev
      libpcre2-dev libmicrohttpd-dev)
# node/npm may come from another packaging (nodesource bundles npm): only ask Debian when absent.
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
cd "$(dirname "$0")/.."
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: Debian packages present"
else
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The JS oracles (tokenizer, Jinja) used by tests, pinned by tests/js/package-lock.json.
# Reinstall when the lock file changed since the last install.
if [ ! -f tests/js/node_modules/.package-lock.json ] ||
   [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
  echo "deps: npm ci in tests/js"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
