// Compiles mailsentry into one native executable, dist/mailsentry.
// Autoloading of .env and bunfig.toml is switched off: a binary must behave the same in every directory.
// The scan worker is a second entry point: the binary embeds it at the path core/filter/pool.ts asks for.
import { $ } from "bun";

const outfile = process.argv[2] ?? "dist/mailsentry";
await $`${process.execPath} build --compile --minify-syntax --minify-whitespace --sourcemap=none \
  --no-compile-autoload-dotenv --no-compile-autoload-bunfig \
  cli/main.ts core/filter/worker.ts --outfile ${outfile}`;
const size = Bun.file(outfile).size;
console.log(`built ${outfile} (${(size / 1024 / 1024).toFixed(0)} MB)`);
