#!/usr/bin/env bash
# k8s.sh -- the Kubernetes manifests of deploy/k8s validated offline: every document against
# the Kubernetes OpenAPI-derived schemas and types of the npm package kubernetes-models (the
# MPIJob against the vendored deploy/k8s/schemas/mpijob-v2beta1.schema.json), plus ttq's
# policy (k8s-validate.cjs). Then deliberately broken copies (wrong type, missing required
# field, unknown field, bad enum, policy violations) must each be rejected.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
npm_setup
K8S=$TTQ_SOURCE_DIR/deploy/k8s
SCHEMA=$K8S/schemas/mpijob-v2beta1.schema.json
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
validate() { node "$here/k8s-validate.cjs" --policy --mpijob-schema "$SCHEMA" "$@"; }

mapfile -t manifests < <(find "$K8S" -name '*.yaml' | sort)
check "found the manifests (${#manifests[@]} files)" test ${#manifests[@]} -ge 10
if validate "${manifests[@]}" >"$TMP/out" 2>&1; then
  echo "ok   every manifest valid ($(grep -c '^ok' "$TMP/out") documents)"
else
  echo "FAIL manifests:"; sed 's/^/     /' "$TMP/out"; fails=$((fails + 1))
fi
for kind in StatefulSet MPIJob NetworkPolicy Service Secret ConfigMap PersistentVolumeClaim; do
  check "a $kind was validated" grep -q "^ok .* $kind/" "$TMP/out"
done

# mutate FILE SED-EXPR NAME PATTERN: a copy of FILE changed by SED-EXPR must be rejected with
# a message matching PATTERN. All copies are validated in one run (the TypeScript compiler
# takes a second to start), then each is looked up in its output.
names=() copies=() patterns=()
mutate() {
  local file=$1 expr=$2 copy
  copy=$TMP/m${#copies[@]}-$(basename "$file")
  sed -e "$expr" "$file" >"$copy"
  if cmp -s "$file" "$copy"; then echo "FAIL $3: the edit changed nothing"; fails=$((fails + 1)); return; fi
  names+=("$3") copies+=("$copy") patterns+=("$4")
}
STS=$K8S/statefulset/statefulset.yaml
JOB=$K8S/mpijob/mpijob.yaml
NP=$K8S/statefulset/networkpolicy.yaml
SVC=$K8S/statefulset/services.yaml
mutate "$STS" 's/^  replicas: 2$/  replicas: two/' "rejects: StatefulSet replicas a string" 'replicas must be integer'
mutate "$STS" '/^  selector:$/,/^  template:$/{/^  template:$/!d}' "rejects: StatefulSet without its required selector" "required property '?selector"
mutate "$STS" 's/^        - name: ttqd$/        - nam: ttqd/' "rejects: container without its required name" "required property '?name"
mutate "$STS" 's/readinessProbe:/readinesProbe:/' "rejects: misspelt readinessProbe (unknown field)" 'readinesProbe.* does not exist'
mutate "$STS" 's/containerPort: 5555/containerPort: "5555"/' "rejects: containerPort a string" 'containerPort must be integer'
mutate "$STS" 's/podManagementPolicy: Parallel/podManagementPolicy: Sometimes/' "rejects: podManagementPolicy not an allowed value" 'podManagementPolicy'
mutate "$STS" 's/value: "2"$/value: "3"/' "rejects (policy): TTQ_K8S_REPLICAS != replicas" 'TTQ_K8S_REPLICAS'
mutate "$STS" '/mountPath: \/models/{n;d}' "rejects (policy): writable model mount" 'model mount must be readOnly'
mutate "$STS" '/^          resources:$/,/^          # Loading/{/# Loading/!d}' "rejects (policy): no resources" 'resources.requests'
mutate "$STS" '/^          livenessProbe:$/,/^          lifecycle:$/{/lifecycle:/!d}' "rejects (policy): no liveness probe" 'readiness and liveness'
mutate "$JOB" 's/slotsPerWorker: 1/slotsPerWorker: one/' "rejects: MPIJob slotsPerWorker a string" 'slotsPerWorker must be integer'
mutate "$JOB" 's/^  mpiReplicaSpecs:$/  replicaSpecs:/' "rejects: MPIJob without mpiReplicaSpecs" "required property '?mpiReplicaSpecs"
mutate "$JOB" '0,/restartPolicy: OnFailure/s//restartPolicy: Sometimes/' "rejects: MPIJob restartPolicy not allowed" 'must be equal to one of the allowed values'
mutate "$JOB" '0,/replicas: 1$/s//replicas: 2/' "rejects: MPIJob with 2 launchers" 'Launcher/replicas must be equal to constant'
mutate "$JOB" '0,/imagePullPolicy: IfNotPresent/s//imagePullPolicy: 3/' "rejects: MPIJob pod template with a wrong type" 'Launcher template: .*imagePullPolicy must be string'
mutate "$JOB" 's/readOnlyRootFilesystem: true/readOnlyRootFileSystem: true/' "rejects: MPIJob pod template with an unknown field" 'readOnlyRootFileSystem.* does not exist'
mutate "$JOB" 's/value: "2"$/value: "4"/' "rejects (policy): launcher TTQ_RANKS != workers x slots" 'TTQ_RANKS'
mutate "$NP" '0,/port: 5555/s//port: 22/' "rejects (policy): clients admitted to another port" 'clients may reach port 5555 only'
mutate "$NP" 's/endPort: 31015/endPort: high/' "rejects: NetworkPolicy endPort a string" 'endPort must be integer'
mutate "$SVC" 's/clusterIP: None/clusterIP: [None]/' "rejects: Service clusterIP a list" 'clusterIP must be string'
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 5555}], selector: {app: nothing}}\n' >"$TMP/orphan.yaml"
names+=("rejects (policy): a Service selecting no pod") copies+=("$TMP/orphan.yaml") patterns+=('selects no pod')
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x\nspec: {}\n' >"$TMP/broken.yaml"
names+=("rejects: YAML syntax error") copies+=("$TMP/broken.yaml") patterns+=('YAML')
validate "${copies[@]}" >"$TMP/mut" 2>&1 || true
for i in "${!copies[@]}"; do
  if grep -E "^FAIL ${copies[$i]}#" "$TMP/mut" | grep -qE -- "${patterns[$i]}"; then
    echo "ok   ${names[$i]}"
  else
    echo "FAIL ${names[$i]} (wanted /${patterns[$i]}/):"
    grep -F "${copies[$i]}" "$TMP/mut" | sed 's/^/     /'
    fails=$((fails + 1))
  fi
done

# The host-file names the launcher builds must be those the headless Service gives the pods.
check "StatefulSet serviceName is the headless Service" grep -q 'serviceName: ttqd-workers' "$STS"
check "headless Service publishes not-ready pods" grep -q 'publishNotReadyAddresses: true' "$SVC"
# Kustomize, when kubectl is here (not required): both bases must build, and validate.
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  for base in statefulset mpijob; do
    if kubectl kustomize "$K8S/$base" >"$TMP/kz-$base.yaml" 2>"$TMP/err" &&
      validate "$TMP/kz-$base.yaml" >"$TMP/kout" 2>&1; then
      echo "ok   kubectl kustomize $base: builds, $(grep -c '^ok' "$TMP/kout") valid documents"
    else
      echo "FAIL kubectl kustomize $base:"; cat "$TMP/err" "$TMP/kout" 2>/dev/null; fails=$((fails + 1))
    fi
  done
else
  echo "note: kubectl not found; the kustomizations were checked for their files only"
fi
finish
