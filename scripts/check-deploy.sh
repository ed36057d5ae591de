#!/usr/bin/env bash
# Berth: validate the deployment files offline.
#
#   scripts/check-deploy.sh
#
# - deploy/kubernetes/*.yaml: strict validation (unknown fields are errors)
#   against the Kubernetes JSON schemas bundled with the PyPI package
#   kubernetes-validate, for each version in BERTH_K8S_VERSIONS (default
#   "1.30.0 1.34.0"), plus cross-checks (selectors, referenced
#   ConfigMaps/Secrets/Services, kustomization.yaml, BERTH_* names).
# - deploy/compose/compose.yaml: the Compose specification's JSON schema
#   (bundled with check-jsonschema as vendor.compose-spec), structural
#   cross-checks, and `docker compose config` when the compose plugin exists.
#
# BERTH_K8S_DIR and BERTH_COMPOSE_FILE check other copies of the files.
# The validators live in a virtualenv under ${XDG_CACHE_HOME:-~/.cache}/berth-tools
# (BERTH_TOOLS_DIR overrides it), installed from PyPI on first use; the checks
# themselves need no network. Idempotent. Exits non-zero on any problem.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${BERTH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools}"
VENV="$TOOLS_DIR/venv"
read -r -a K8S_VERSIONS <<<"${BERTH_K8S_VERSIONS:-1.30.0 1.34.0}"
# Pinned so that a new release can never change the verdict unnoticed.
REQUIREMENTS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 PyYAML==6.0.3)
# Overridable to check other copies (e.g. to prove that a broken manifest fails).
K8S_DIR="${BERTH_K8S_DIR:-$REPO_ROOT/deploy/kubernetes}"
COMPOSE_FILE="${BERTH_COMPOSE_FILE:-$REPO_ROOT/deploy/compose/compose.yaml}"
CHECKER="$REPO_ROOT/deploy/check_deploy.py"

info() { printf '[check-deploy] %s\n' "$*"; }
die() {
    printf '[check-deploy] FAILED: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- tools
ensure_tools() {
    local stamp="$VENV/.berth-requirements" wanted="${REQUIREMENTS[*]}"
    if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] &&
        "$VENV/bin/python" -c 'import kubernetes_validate, check_jsonschema, yaml' 2>/dev/null; then
        return
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found"
    info "installing ${REQUIREMENTS[*]} into $VENV"
    rm -rf "$VENV"
    mkdir -p "$TOOLS_DIR"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 ships venv separately.
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            info "python3 -m venv failed; installing python3-venv"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$VENV"
            python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
        else
            die "python3 -m venv failed (install python3-venv)"
        fi
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" ||
        die "pip install ${REQUIREMENTS[*]} failed"
    printf '%s' "$wanted" >"$stamp"
}

ensure_tools
PY="$VENV/bin/python"
failed=()

# ---------------------------------------------------------------- Kubernetes
info "Kubernetes manifests in ${K8S_DIR#"$REPO_ROOT"/} (strict; versions ${K8S_VERSIONS[*]})"
k8s_args=()
for version in "${K8S_VERSIONS[@]}"; do
    k8s_args+=(--k8s-version "$version")
done
"$PY" "$CHECKER" kubernetes "${k8s_args[@]}" "$K8S_DIR" || failed+=("kubernetes manifests")

# ---------------------------------------------------------------- Compose
info "Compose file ${COMPOSE_FILE#"$REPO_ROOT"/}: compose-spec JSON schema"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$COMPOSE_FILE" ||
    failed+=("compose schema")

info "Compose file: structure"
"$PY" "$CHECKER" compose "$COMPOSE_FILE" || failed+=("compose structure")

if docker compose version >/dev/null 2>&1; then
    info "Compose file: docker compose config"
    # A placeholder for the one variable the file requires from the environment.
    BERTH_AUTH_ADMIN_PASSWORD="${BERTH_AUTH_ADMIN_PASSWORD:-check-deploy-placeholder}" \
        docker compose --file "$COMPOSE_FILE" config --quiet || failed+=("docker compose config")
else
    info "Compose file: docker compose plugin not installed, \`docker compose config\` skipped"
fi

# ---------------------------------------------------------------- summary
if [[ ${#failed[@]} -gt 0 ]]; then
    die "${failed[*]}"
fi
info "all deployment checks passed"
