// Runs after `vite build`: records the hash of the sources the build came from (so a test can
// tell a stale committed build), writes the licences of every package in package-lock.json and
// copies axe-core (a dev dependency) to tests/browser/vendor for the accessibility audit.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, "..", "services", "ingest", "console_assets");

// Keep in step with tests/unit/test_console_assets.py:source_hash.
export function sourceFiles() {
  const files = ["index.html", "vite.config.js", "package.json", "package-lock.json"];
  const walk = (dir) => {
    for (const name of readdirSync(join(root, dir))) {
      const rel = `${dir}/${name}`;
      if (statSync(join(root, rel)).isDirectory()) walk(rel);
      else files.push(rel);
    }
  };
  walk("src");
  walk("scripts");
  return files.sort();
}

export function sourceHash() {
  const hash = createHash("sha256");
  for (const rel of sourceFiles()) {
    const data = readFileSync(join(root, rel));
    hash.update(`${rel}\n${data.length}\n`);
    hash.update(data);
  }
  return hash.digest("hex");
}

function licences() {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));
  const rows = [];
  for (const [path, pkg] of Object.entries(lock.packages)) {
    if (!path) continue;
    const name = path.split("node_modules/").pop();
    rows.push({ name, version: pkg.version, license: pkg.license ?? "see package", dev: !!pkg.dev });
  }
  rows.sort((a, b) => a.name.localeCompare(b.name));
  const lines = [
    "# Third-party packages of the console (generated from console/package-lock.json by `npm run build`)",
    "",
    "Shipped in the built assets (runtime dependencies):",
    "",
    ...rows.filter((r) => !r.dev).map((r) => `- ${r.name} ${r.version}: ${r.license}`),
    "",
    "Used only to build or test (not shipped):",
    "",
    ...rows.filter((r) => r.dev).map((r) => `- ${r.name} ${r.version}: ${r.license}`),
    "",
  ];
  const shipped = rows.filter((r) => !r.dev);
  for (const r of shipped) {
    const dir = join(root, "node_modules", ...r.name.split("/"));
    const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
    if (file) lines.push(`## ${r.name} ${r.version}`, "", readFileSync(join(dir, file), "utf8").trim(), "");
  }
  return lines.join("\n");
}

const text = licences();
writeFileSync(join(root, "THIRD_PARTY_LICENSES.md"), text);
writeFileSync(join(out, "THIRD_PARTY_LICENSES.md"), text);
writeFileSync(join(out, "SOURCE_HASH"), `${sourceHash()}\n`);
const vendor = join(root, "..", "tests", "browser", "vendor");
mkdirSync(vendor, { recursive: true });
copyFileSync(join(root, "node_modules", "axe-core", "axe.min.js"), join(vendor, "axe.min.js"));
copyFileSync(join(root, "node_modules", "axe-core", "LICENSE"), join(vendor, "axe-core.LICENSE"));
console.log(`console assets: ${relative(join(root, ".."), out).split(sep).join("/")} (source ${sourceHash().slice(0, 12)})`);
