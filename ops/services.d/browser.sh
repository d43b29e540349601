# shellcheck shell=bash
# Sourced by ops/services. The headless browser the console's end-to-end tests
# (tests/it/ui.rs) drive: Debian's Chromium and its WebDriver server
# (`chromium-driver` gives `chromedriver`), and pngquant, which shrinks the
# screenshots the README shows. Not a service: nothing runs until a test starts
# chromedriver on a port of its own. Installed by `browser_up`.

BROWSER_APT_PACKAGES=(chromium chromium-driver pngquant)

browser_ok() {
  have chromium && have chromedriver && have pngquant
}

browser_up() {
  if browser_ok; then note browser "reused ($(chromedriver --version 2>/dev/null | cut -d' ' -f1-2))"; return; fi
  have apt-get || die "browser: apt-get not found (install ${BROWSER_APT_PACKAGES[*]} by hand)"
  local sudo=()
  if ((EUID != 0)); then have sudo || die "browser: not root and no sudo"; sudo=(sudo); fi
  log "browser: apt-get install ${BROWSER_APT_PACKAGES[*]}"
  "${sudo[@]}" apt-get update -qq >&2 || die "browser: apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${BROWSER_APT_PACKAGES[@]}" >&2 ||
    die "browser: apt-get install ${BROWSER_APT_PACKAGES[*]} failed"
  hash -r
  browser_ok || die "browser: installed but chromium, chromedriver or pngquant is missing"
  note browser "installed ($(chromedriver --version 2>/dev/null | cut -d' ' -f1-2))"
}
