#!/usr/bin/env bash
# Makes Hotline's spoken demo prompts with espeak-ng + sox (Debian packages), installing
# them when missing. Output: 8 kHz mono µ-law WAVs, the format the media engine plays
# without conversion. Usage: make-voice-prompts.sh OUTDIR
set -euo pipefail
out="${1:?usage: make-voice-prompts.sh OUTDIR}"

need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need+=(sox)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing prompt tools: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

say() { # name text
  espeak-ng -v en-us -s 150 -w "$tmp/$1.wav" "$2"
  sox "$tmp/$1.wav" -r 8000 -c 1 -e u-law "$out/$1.wav"
}

say welcome "Welcome to Hotline. Please hold, your call is important to us."
say menu "For sales, press one. For support, press two."
say position "You are number"
say in-queue "in the queue."
say expected-wait "Your expected wait is about"
say minutes "minutes."
say closed "We are closed right now. Please call again during business hours."
say callback "To keep your place and be called back, press star."
say invalid "Sorry, that is not a valid choice."
say goodbye "Thank you for calling. Goodbye."
for d in 0 1 2 3 4 5 6 7 8 9; do
  say "digit-$d" "$d"
done
ls "$out"
