// Validates AsyncAPI documents with the official parser (@asyncapi/parser), as
// tests/unit/test_asyncapi.py does: `node tools/asyncapi/check.mjs FILE...`.
// Prints every error and warning; exits 1 if any document has an error, 2 on misuse.
import { DiagnosticSeverity, Parser, fromFile } from '@asyncapi/parser';

const SEVERITY = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
};

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node tools/asyncapi/check.mjs FILE...');
  process.exit(2);
}

const parser = new Parser();
let failed = false;
for (const file of files) {
  let result;
  try {
    result = await fromFile(parser, file).parse();
  } catch (err) {
    // An unreadable file is no verdict on a document.
    console.error(`${file}: ${err.message}`);
    process.exit(2);
  }
  const { document, diagnostics } = result;
  let errors = 0;
  let warnings = 0;
  for (const d of diagnostics) {
    const severity = SEVERITY[d.severity];
    if (severity === undefined) continue; // information and hints
    if (d.severity === DiagnosticSeverity.Error) errors += 1;
    else warnings += 1;
    const at = d.range ? `:${d.range.start.line + 1}:${d.range.start.character + 1}` : '';
    const path = d.path && d.path.length ? ` (at ${d.path.join('.')})` : '';
    console.error(`${file}${at}: ${severity} ${d.code}: ${d.message}${path}`);
  }
  if (errors > 0 || document === undefined) {
    failed = true;
    console.error(`${file}: INVALID, ${errors} error(s), ${warnings} warning(s)`);
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()}, ${warnings} warning(s)`);
  }
}
process.exit(failed ? 1 : 0);
