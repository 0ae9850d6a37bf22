#!/usr/bin/env bash
# Hotline's full test suite. Works on a fresh Debian machine: installs the real peers the
# tests talk to (SIPp, baresip, espeak-ng and sox, PostgreSQL) when they are missing, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need+=(sox)
command -v baresip >/dev/null 2>&1 || need+=(baresip)
# The in-kernel RTP relay's BPF program (crates/media/bpf) is built by clang; its tests
# (crates/media/tests/kernel_relay.rs, sip-tests' kernel relay calls) need it and root.
command -v clang >/dev/null 2>&1 || need+=(clang)
# WebRTC gateway browser test (crates/media/tests/webrtc_chromium.rs): Debian's chromium.
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing test peers: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

# The agent desktop's browser tests (sip-tests/tests/desk_browser.rs): Debian's chromium,
# Node and playwright-core from sip-tests/browser/package-lock.json.
desk_need=()
[ -x /usr/bin/chromium ] || desk_need+=(chromium)
command -v npm >/dev/null 2>&1 || desk_need+=(nodejs npm)
if [ ${#desk_need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing the desk's browser-test tools: ${desk_need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${desk_need[@]}"
fi
[ -d sip-tests/browser/node_modules/playwright-core ] || (cd sip-tests/browser && npm ci --no-audit --no-fund)

# The SIP-over-WebSocket tests run JsSIP on node (sip-tests/node, pinned by its lock file;
# node and npm are installed above).
if [ ! -d sip-tests/node/node_modules ]; then
  (cd sip-tests/node && npm ci --no-audit --no-fund)
fi

# The CRM store's suite runs against PostgreSQL as well as SQLite: start (or install) one.
bash crates/crm/scripts/ensure-postgres.sh

# WebRTC gateway browser test: playwright-core drives the chromium above.
if [ ! -d crates/media/tests/browser/node_modules/playwright-core ]; then
  (cd crates/media/tests/browser && npm ci --no-audit --no-fund)
fi
# The wallboard's browser test (sip-tests/tests/wallboard.rs): playwright-core pinned by
# sip-tests/browser-wall/package-lock.json drives the chromium above.
[ -d sip-tests/browser-wall/node_modules/playwright-core ] \
  || (cd sip-tests/browser-wall && npm ci --no-audit --no-fund)
# The admin page's browser test (sip-tests/tests/admin_browser.rs): the same pinned
# playwright-core (sip-tests/browser-admin/package-lock.json) and chromium.
[ -d sip-tests/browser-admin/node_modules/playwright-core ] \
  || (cd sip-tests/browser-admin && npm ci --no-audit --no-fund)

cargo test --workspace --locked
