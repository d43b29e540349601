// Validates KEDA objects against KEDA's own API schema (the models of
// @kubernetes-models/keda, generated from KEDA's CRDs and Go types).
// Usage: node keda-validate.mjs MODULES_DIR < docs.json
//   docs.json: a JSON array of {file, doc} for every keda.sh document.
// Exit 1 naming each invalid document; an unknown keda.sh kind is invalid too.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node keda-validate.mjs MODULES_DIR < docs.json");
  process.exit(2);
}
const docs = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const { file, doc } of docs) {
  const [group, version] = String(doc.apiVersion).split("/");
  const where = `${file}: ${doc.kind}/${doc.metadata?.name}`;
  let Model;
  try {
    const path = join(modules, "@kubernetes-models/keda", group, version, `${doc.kind}.js`);
    Model = (await import(pathToFileURL(path).href))[doc.kind];
  } catch (e) {
    console.error(`INVALID ${where}: no KEDA model for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok ${where}`);
  } catch (e) {
    console.error(`INVALID ${where}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
