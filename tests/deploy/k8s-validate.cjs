// k8s-validate.cjs -- validates Kubernetes manifests offline (tests/deploy/k8s.sh).
//
//   node k8s-validate.cjs [--mpijob-schema FILE] [--policy] FILE.yaml...
//
// Every YAML document is checked three ways:
//  1. schema: the JSON-schema validator that the npm package kubernetes-models generated from
//     the Kubernetes OpenAPI specification (required fields, types, enums, formats);
//     an MPIJob (kubeflow.org/v2beta1) against the vendored schema deploy/k8s/schemas/
//     mpijob-v2beta1.schema.json (ajv), and its pod templates against PodTemplateSpec;
//  2. fields: the object is type-checked by the TypeScript compiler against the interfaces of
//     the same package, which rejects unknown fields (a misspelt "readinesProbe" is silently
//     dropped by the schema, as by a lenient API server);
//  3. with --policy, the ttq-specific rules (resources, probes, ports, replicas, selectors).
// Prints "ok   FILE#N KIND/NAME" or "FAIL FILE#N KIND/NAME: reason" per document; exits 1 when
// any document fails. Kustomization files are checked for their resources' existence only.
'use strict';
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const ts = require('typescript');
const Ajv = require('ajv');

const args = process.argv.slice(2);
let mpijobSchemaFile = null;
let policy = false;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--mpijob-schema') mpijobSchemaFile = args[++i];
  else if (args[i] === '--policy') policy = true;
  else files.push(args[i]);
}
if (!files.length) {
  console.error('usage: k8s-validate.cjs [--mpijob-schema FILE] [--policy] FILE.yaml...');
  process.exit(2);
}

// apiVersion -> kubernetes-models directory
function modelDir(apiVersion) {
  if (apiVersion === 'v1') return 'v1';
  const [group, version] = apiVersion.split('/');
  if (!version) return null;
  return `${group}/${version}`;
}
function loadModel(apiVersion, kind) {
  const dir = modelDir(apiVersion);
  if (!dir || !/^[A-Za-z]+$/.test(kind)) return null;
  try {
    return { mod: require(`kubernetes-models/${dir}/${kind}`), spec: `kubernetes-models/${dir}/${kind}` };
  } catch (e) {
    return null;
  }
}
function schemaErrors(validateFn, obj) {
  try {
    validateFn(obj);
    return [];
  } catch (e) {
    return [e.message.split('\n')[0]];
  }
}

let mpijobValidate = null;
if (mpijobSchemaFile) {
  const ajv = new Ajv({ allErrors: true, strict: false });
  mpijobValidate = ajv.compile(JSON.parse(fs.readFileSync(mpijobSchemaFile, 'utf8')));
}
const { PodTemplateSpec } = require('kubernetes-models/v1/PodTemplateSpec');

const docs = []; // {file, index, obj, errors: [], id}
for (const file of files) {
  const src = fs.readFileSync(file, 'utf8');
  // Kubernetes reads YAML 1.1 (0440 is octal there)
  const parsed = YAML.parseAllDocuments(src, { version: '1.1' });
  parsed.forEach((d, index) => {
    const entry = { file, index, obj: null, errors: [], id: '?' };
    docs.push(entry);
    if (d.errors.length) {
      entry.errors.push('YAML: ' + d.errors[0].message.split('\n')[0]);
      return;
    }
    entry.obj = d.toJS();
    if (entry.obj === null) docs.pop();
  });
}

// ---- 1. schema ----
const tsDecls = []; // [docIndex, typeImportSpec, typeName, json]
for (const [di, d] of docs.entries()) {
  const o = d.obj;
  if (!o) continue;
  if (typeof o !== 'object' || Array.isArray(o)) {
    d.errors.push('not an object');
    continue;
  }
  d.id = `${o.kind || '?'}/${(o.metadata && o.metadata.name) || '?'}`;
  if (o.kind === 'Kustomization') {
    for (const r of o.resources || []) {
      if (!fs.existsSync(path.join(path.dirname(d.file), r))) d.errors.push(`resource ${r} does not exist`);
    }
    d.kustomization = true;
    continue;
  }
  if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string') {
    d.errors.push('apiVersion and kind are required strings');
    continue;
  }
  if (o.apiVersion === 'kubeflow.org/v2beta1' && o.kind === 'MPIJob') {
    if (!mpijobValidate) {
      d.errors.push('MPIJob found but no --mpijob-schema given');
      continue;
    }
    if (!mpijobValidate(o)) {
      for (const e of mpijobValidate.errors) d.errors.push(`mpijob schema: ${e.instancePath || '/'} ${e.message}`);
    }
    const specs = (o.spec && o.spec.mpiReplicaSpecs) || {};
    for (const [role, rs] of Object.entries(specs)) {
      if (!rs || typeof rs.template !== 'object') continue;
      for (const m of schemaErrors((x) => new PodTemplateSpec(x).validate(), rs.template))
        d.errors.push(`${role} template: ${m}`);
      tsDecls.push([di, 'kubernetes-models/v1/PodTemplateSpec', 'IPodTemplateSpec', rs.template]);
    }
    continue;
  }
  const model = loadModel(o.apiVersion, o.kind);
  if (!model) {
    d.errors.push(`no schema for ${o.apiVersion} ${o.kind}`);
    continue;
  }
  const Cls = model.mod[o.kind];
  for (const m of schemaErrors((x) => new Cls(x).validate(), o)) d.errors.push(`schema: ${m}`);
  tsDecls.push([di, model.spec, `I${o.kind}`, o]);
}

// ---- 2. unknown fields: TypeScript excess-property checks against the package's interfaces ----
if (tsDecls.length) {
  const lines = [];
  const imports = new Map();
  for (const [, spec, type] of tsDecls) {
    if (!imports.has(`${spec}|${type}`)) {
      imports.set(`${spec}|${type}`, `T${imports.size}`);
      lines.push(`import type { ${type} as T${imports.size - 1} } from "${spec}";`);
    }
  }
  const lineDoc = new Map();
  tsDecls.forEach(([di, spec, type, obj], k) => {
    lineDoc.set(lines.length, di);
    lines.push(`export const d${k}: ${imports.get(`${spec}|${type}`)} = ${JSON.stringify(obj)};`);
  });
  // the virtual file lives beside node_modules, so that the type imports resolve
  const root = path.resolve(path.dirname(require.resolve('kubernetes-models/package.json')), '..', '..');
  const vfile = path.join(root, '__k8s_manifests__.ts');
  const text = lines.join('\n') + '\n';
  const options = {
    strict: true, noEmit: true, types: [], skipLibCheck: true,
    module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10,
  };
  const host = ts.createCompilerHost(options);
  const origGet = host.getSourceFile;
  host.getSourceFile = (f, lang, ...rest) =>
    f === vfile ? ts.createSourceFile(f, text, lang) : origGet.call(host, f, lang, ...rest);
  const origExists = host.fileExists;
  host.fileExists = (f) => f === vfile || origExists.call(host, f);
  const program = ts.createProgram([vfile], options, host);
  for (const diag of ts.getPreEmitDiagnostics(program)) {
    const msg = ts.flattenDiagnosticMessageText(diag.messageText, ' ');
    if (diag.file && diag.file.fileName === vfile && diag.start !== undefined) {
      const { line } = diag.file.getLineAndCharacterOfPosition(diag.start);
      const di = lineDoc.get(line);
      if (di !== undefined) {
        docs[di].errors.push(`fields: ${msg}`);
        continue;
      }
    }
    console.error(`k8s-validate: TypeScript: ${msg}`);
    process.exitCode = 1;
  }
}

// ---- 3. ttq policy ----
function containersOf(o) {
  const out = [];
  const add = (tpl, role) => {
    const spec = tpl && tpl.spec;
    for (const c of (spec && spec.containers) || []) out.push({ c, role, podLabels: (tpl.metadata && tpl.metadata.labels) || {}, spec });
  };
  if (o.kind === 'StatefulSet' || o.kind === 'Deployment') add(o.spec && o.spec.template, o.kind);
  if (o.kind === 'MPIJob') for (const [role, rs] of Object.entries((o.spec && o.spec.mpiReplicaSpecs) || {})) add(rs.template, role);
  return out;
}
function env(c, name) {
  const e = (c.env || []).find((x) => x.name === name);
  return e ? e.value : undefined;
}
function probeText(p) {
  return p ? JSON.stringify(p) : '';
}
if (policy) {
  const podLabelSets = []; // label maps of every pod template, for Service/NetworkPolicy selectors
  for (const d of docs) if (d.obj && !d.kustomization) for (const x of containersOf(d.obj)) podLabelSets.push(x.podLabels);
  for (const d of docs) {
    const o = d.obj;
    if (!o || d.kustomization || d.errors.length) continue;
    for (const { c, role, spec } of containersOf(o)) {
      const where = `${role} container ${c.name}`;
      const r = c.resources || {};
      for (const k of ['requests', 'limits'])
        if (!r[k] || !r[k].memory || !r[k].cpu) d.errors.push(`policy: ${where}: resources.${k} needs cpu and memory`);
      if (!c.readinessProbe || !c.livenessProbe) d.errors.push(`policy: ${where}: needs readiness and liveness probes`);
      const sc = c.securityContext || {};
      if (sc.allowPrivilegeEscalation !== false || sc.readOnlyRootFilesystem !== true)
        d.errors.push(`policy: ${where}: allowPrivilegeEscalation false and readOnlyRootFilesystem true`);
      const psc = spec.securityContext || {};
      if (psc.runAsNonRoot !== true) d.errors.push(`policy: ${role}: runAsNonRoot must be true`);
      const serves = role === 'StatefulSet' || role === 'Launcher';
      if (serves && !/ttq(d-k8s)?"?,"?(health|probe)/.test(probeText(c.readinessProbe)))
        d.errors.push(`policy: ${where}: the readiness probe must ask ttq health (directly or via ttqd-k8s probe)`);
      for (const m of c.volumeMounts || []) {
        if (m.mountPath === '/models' && m.readOnly !== true) d.errors.push(`policy: ${where}: the model mount must be readOnly`);
      }
    }
    if (o.kind === 'StatefulSet') {
      const c = o.spec.template.spec.containers[0];
      if (String(env(c, 'TTQ_K8S_REPLICAS')) !== String(o.spec.replicas))
        d.errors.push(`policy: TTQ_K8S_REPLICAS (${env(c, 'TTQ_K8S_REPLICAS')}) must equal spec.replicas (${o.spec.replicas})`);
      if (o.spec.podManagementPolicy !== 'Parallel') d.errors.push('policy: podManagementPolicy must be Parallel');
      const models = (o.spec.template.spec.volumes || []).find((v) => v.name === 'models');
      if (!models || !((models.persistentVolumeClaim && models.persistentVolumeClaim.readOnly) || models.hostPath))
        d.errors.push('policy: the models volume must be a read-only PVC or a hostPath');
    }
    if (o.kind === 'MPIJob') {
      const w = o.spec.mpiReplicaSpecs.Worker;
      const l = o.spec.mpiReplicaSpecs.Launcher.template.spec.containers[0];
      const want = (w ? w.replicas || 1 : 0) * (o.spec.slotsPerWorker || 1);
      if (String(env(l, 'TTQ_RANKS')) !== String(want))
        d.errors.push(`policy: launcher TTQ_RANKS (${env(l, 'TTQ_RANKS')}) must be Worker replicas x slotsPerWorker (${want})`);
    }
    if (o.kind === 'Service') {
      const sel = o.spec.selector || {};
      const hits = podLabelSets.filter((ls) => Object.entries(sel).every(([k, v]) => ls[k] === v ||
        k === 'statefulset.kubernetes.io/pod-name' || k.startsWith('training.kubeflow.org/')));
      if (!hits.length) d.errors.push('policy: the Service selects no pod template of these manifests');
    }
    if (o.kind === 'NetworkPolicy') {
      for (const rule of o.spec.ingress || []) {
        if (!rule.ports || !rule.ports.length) d.errors.push('policy: every ingress rule must name its ports');
        if (!rule.from || !rule.from.length) d.errors.push('policy: every ingress rule must name its sources');
        const ports = (rule.ports || []).map((p) => p.port);
        const fromClients = (rule.from || []).some((f) => f.podSelector && f.podSelector.matchLabels && f.podSelector.matchLabels['ttq-client']);
        if (fromClients && ports.some((p) => p !== 5555)) d.errors.push('policy: clients may reach port 5555 only');
      }
    }
  }
}

let failed = 0;
for (const d of docs) {
  const name = `${d.file}#${d.index} ${d.id}`;
  if (d.errors.length) {
    failed++;
    for (const e of d.errors) console.log(`FAIL ${name}: ${e}`);
  } else {
    console.log(`ok   ${name}`);
  }
}
if (failed || process.exitCode) process.exit(1);
